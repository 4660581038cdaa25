//! Downloads against a tiny local HTTP server that sends more than the caller takes: with
//! no `Content-Length`, with one over the bound, and with one that understates the body.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{Error, Http};

/// What the tests take.
const MAX: usize = 64 * 1024;
/// What the server offers: far more than `MAX` and than loopback socket buffers hold, so a
/// client that stops reading makes the server's writes fail well before all of it is sent.
const OFFERED: usize = 64 * 1024 * 1024;
/// How long any one test may take.
const WITHIN: Duration = Duration::from_secs(20);

/// A server for one request that answers with `head` (status line and headers, without the
/// blank line) and then writes up to `OFFERED` body bytes; yields how many it wrote before
/// the client went away.
async fn server(head: &'static str) -> (String, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return 0,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        if socket
            .write_all(format!("{head}\r\n\r\n").as_bytes())
            .await
            .is_err()
        {
            return 0;
        }
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0;
        while written < OFFERED {
            match socket.write(&chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n,
            }
        }
        written
    });
    (base, task)
}

/// Downloads from `base` with `MAX`, then waits for the server to be done.
async fn download(base: &str, task: JoinHandle<usize>) -> (crate::Result<Vec<u8>>, usize) {
    let http = Http::new(base).unwrap();
    let got = tokio::time::timeout(WITHIN, http.download_max("r", "f", MAX))
        .await
        .expect("the download ends");
    let written = tokio::time::timeout(WITHIN, task)
        .await
        .expect("the server ends")
        .unwrap();
    (got, written)
}

/// A body with no `Content-Length` that runs past the bound is refused with `TooLarge`, and
/// reading stops there: the server could not send most of what it offered.
#[tokio::test]
async fn a_body_past_the_bound_is_refused_and_no_longer_read() {
    let (base, task) = server("HTTP/1.1 200 OK\r\nConnection: close").await;
    let (got, written) = download(&base, task).await;
    match got {
        Err(Error::TooLarge { max, declared }) => {
            assert_eq!((max, declared), (MAX as u64, None));
        }
        Err(e) => panic!("not TooLarge: {e:?}"),
        Ok(body) => panic!("read whole: {} bytes", body.len()),
    }
    assert!(
        written < OFFERED / 2,
        "the client read on: {written} bytes sent"
    );
}

/// A `Content-Length` over the bound is refused before the body is read.
#[tokio::test]
async fn a_declared_length_over_the_bound_is_refused_before_reading() {
    let (base, task) =
        server("HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\nConnection: close").await;
    let (got, written) = download(&base, task).await;
    match got {
        Err(Error::TooLarge { max, declared }) => {
            assert_eq!((max, declared), (MAX as u64, Some(1 << 40)));
        }
        Err(e) => panic!("not TooLarge: {e:?}"),
        Ok(body) => panic!("read: {} bytes", body.len()),
    }
    assert!(
        written < OFFERED / 2,
        "the client read on: {written} bytes sent"
    );
}

/// A `Content-Length` within the bound that understates the body: no more than it said is
/// taken, nor read on.
#[tokio::test]
async fn a_body_longer_than_declared_is_not_read_past_its_length() {
    let (base, task) = server("HTTP/1.1 200 OK\r\nContent-Length: 1000").await;
    let (got, written) = download(&base, task).await;
    if let Ok(body) = &got {
        assert_eq!(body.len(), 1000);
    }
    assert!(
        written < OFFERED / 2,
        "the client read on: {written} bytes sent"
    );
}

/// A body within the bound is read whole.
#[tokio::test]
async fn a_body_within_the_bound_is_read_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = socket.read(&mut buf).await;
        let body = vec![b'y'; MAX];
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {MAX}\r\n\r\n");
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(&body).await;
    });
    let http = Http::new(&base).unwrap();
    let body = tokio::time::timeout(WITHIN, http.download_max("r", "f", MAX))
        .await
        .expect("the download ends")
        .expect("within the bound");
    assert_eq!(body.len(), MAX);
}

/// A JSON answer that never ends is refused once past [`crate::download::MAX_ANSWER_BYTES`],
/// and an error answer's body once past its own small bound: neither is read on.
#[tokio::test]
async fn endless_answers_and_error_bodies_are_not_read_on() {
    for (head, limit) in [
        (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close",
            crate::download::MAX_ANSWER_BYTES,
        ),
        (
            "HTTP/1.1 500 Internal Server Error\r\nConnection: close",
            crate::download::MAX_ERROR_BYTES,
        ),
    ] {
        let (base, task) = server(head).await;
        let http = Http::new(&base).unwrap();
        let got = tokio::time::timeout(WITHIN, http.thread("r", 1, None, 10))
            .await
            .expect("the call ends");
        let written = tokio::time::timeout(WITHIN, task)
            .await
            .expect("the server ends")
            .unwrap();
        match got {
            Err(Error::TooLarge { max, .. }) => assert_eq!(max, limit as u64),
            Err(Error::Protocol(_)) => assert_eq!(limit, crate::download::MAX_ERROR_BYTES),
            Err(e) => panic!("{head}: {e:?}"),
            Ok(page) => panic!("{head}: read a page {page:?}"),
        }
        assert!(
            written < OFFERED / 2,
            "{head}: the client read on: {written} bytes sent"
        );
    }
}
