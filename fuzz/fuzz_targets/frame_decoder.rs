//! The WebSocket frame decoder on arbitrary bytes: it never panics, never yields an event
//! the protocol forbids (text that is not UTF-8 or over the limit, a ping over 125 bytes),
//! and yields the same events however the bytes are split into reads (the first byte of the
//! input chooses the split points).
#![no_main]

use chatmesh_gateway::session::reader::{Decoder, Event};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

/// Every event (or the violation that ends the stream) of `input` fed in pieces of `step`.
fn events(input: &[u8], step: usize) -> Vec<Result<Event, u16>> {
    let mut decoder = Decoder::new(MAX);
    let mut out = Vec::new();
    for piece in input.chunks(step.max(1)) {
        let mut rest = piece;
        loop {
            let (used, event) = decoder.decode(rest);
            rest = &rest[used..];
            match event {
                Some(Ok(e)) => out.push(Ok(e)),
                Some(Err(v)) => {
                    out.push(Err(v.code));
                    return out;
                }
                None => break,
            }
            if rest.is_empty() {
                break;
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let whole = events(input, input.len());
    for e in &whole {
        match e {
            Ok(Event::Text(t)) => {
                assert!(t.len() <= MAX, "text over the limit");
                assert!(std::str::from_utf8(t).is_ok(), "text that is not UTF-8");
            }
            Ok(Event::Ping(p)) => assert!(p.len() <= 125, "ping over 125 bytes"),
            Ok(_) => {}
            Err(code) => assert!(
                matches!(code, 1002 | 1007 | 1008 | 1009),
                "close code {code}"
            ),
        }
    }
    let pieces = events(input, usize::from(split % 17) + 1);
    assert_eq!(whole, pieces, "split reads changed the events");
});
