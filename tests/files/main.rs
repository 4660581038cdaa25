//! Shared files end to end (docs/PROTOCOL.md, "Files"): a real mesh (nats-server, worker,
//! fjall, gateway) with its files in a local folder (`local`) or on a real S3 server
//! (`s3`: s3s-fs over a temp folder, SigV4 checked); uploads, downloads, ranges, thumbnails,
//! attachments on messages, access, quotas, bad input and the sweeper; `lifecycle`: files
//! that end with a moderated message or a deleted room.

#[path = "../common/mod.rs"]
mod common;
mod gate;
mod hold;
mod lifecycle;
mod local;
mod races;
mod s3;
mod support;
