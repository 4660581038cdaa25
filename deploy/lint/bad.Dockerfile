# A Dockerfile that breaks every rule of deploy/check-image (CI expects the check to fail).
FROM debian
COPY . .
RUN cargo build --release
USER root
