//! Prints a room's whole history, oldest first, as JSON Lines.
//!
//! ```sh
//! cargo run -p chatmesh-client --example history_dump -- http://127.0.0.1:8080 general USER PASSWORD
//! ```

use chatmesh_client::Client;
use futures::TryStreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, room, user, password] = args.as_slice() else {
        return Err("usage: history_dump BASE_URL ROOM USER PASSWORD".into());
    };
    let client = Client::builder(base)
        .login(user, password)
        .connect()
        .await?;
    // Pages come newest first; each page is oldest first.
    let pages: Vec<_> = client.history_pages(room, 100).try_collect().await?;
    for message in pages.iter().rev().flatten() {
        println!("{}", serde_json::to_string(message)?);
    }
    client.close().await;
    Ok(())
}
