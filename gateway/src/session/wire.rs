//! Encodes server → client WebSocket frames (unmasked) straight into a write buffer, so a
//! batch of queued frames goes out in one system call.

/// Opcode of a text frame.
pub const TEXT: u8 = 0x1;
/// Opcode of a close frame.
pub const CLOSE: u8 = 0x8;
/// Opcode of a pong frame.
pub const PONG: u8 = 0xA;

/// Appends one final frame with `opcode` and `payload` to `buf`.
pub fn put_frame(buf: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    // One reservation per frame: an empty buffer gets exactly one allocation.
    buf.reserve(len + 10);
    buf.push(0x80 | opcode);
    if len < 126 {
        buf.push(len as u8);
    } else if len <= u16::MAX as usize {
        buf.push(126);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
    buf.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to fit a control frame).
pub fn put_close(buf: &mut Vec<u8>, code: u16, reason: &str) {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    put_frame(buf, CLOSE, &payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_right_form() {
        let mut b = Vec::new();
        put_frame(&mut b, TEXT, b"hi");
        assert_eq!(b, [0x81, 2, b'h', b'i']);
        let mut b = Vec::new();
        put_frame(&mut b, TEXT, &[0; 200]);
        assert_eq!(&b[..4], &[0x81, 126, 0, 200]);
        let mut b = Vec::new();
        put_frame(&mut b, TEXT, &vec![0; 70_000]);
        assert_eq!(&b[..2], &[0x81, 127]);
        assert_eq!(b.len(), 10 + 70_000);
    }

    #[test]
    fn close_reason_is_bounded() {
        let mut b = Vec::new();
        put_close(&mut b, 1013, &"é".repeat(100));
        assert_eq!(b[0], 0x88);
        assert!(b[1] as usize <= 125);
        assert_eq!(&b[2..4], &1013u16.to_be_bytes());
    }
}
