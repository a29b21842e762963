//! Framing of STUN messages and ChannelData on a byte stream (RFC 8656
//! §3.1, §12.5): messages back to back, ChannelData padded to 4 bytes. The
//! first two bits tell the kind; the length field tells where it ends.

use super::message::CHANNEL_DATA_HEADER;

/// Why a stream cannot be read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The next bytes are neither STUN nor ChannelData: the stream has lost
    /// sync and must be closed.
    Garbage,
    /// The next frame is longer than the configured maximum.
    TooLarge(usize),
}

/// The length of the frame at the start of `buf`, once enough of it is
/// there to tell: `Ok(None)` means "read more".
pub fn next_frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let is_stun = match first >> 6 {
        0b00 => true,
        0b01 => false,
        _ => return Err(FrameError::Garbage),
    };
    let Some(len) = buf.get(2..4) else {
        return Ok(None);
    };
    let body = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let total = if is_stun {
        // The verdict must not depend on how the bytes arrive: a length that
        // is not a multiple of 4 is known from the first 4 bytes; the magic
        // cookie (RFC 8489 §5) is waited for before the length is compared
        // with `max`. Without the cookie this is not STUN, and on a stream
        // there is no finding the next message boundary.
        if body % 4 != 0 {
            return Err(FrameError::Garbage);
        }
        let Some(cookie) = buf.get(4..8) else {
            return Ok(None);
        };
        if cookie != stun::message::MAGIC_COOKIE.to_be_bytes() {
            return Err(FrameError::Garbage);
        }
        stun::message::MESSAGE_HEADER_SIZE + body
    } else {
        CHANNEL_DATA_HEADER + body.next_multiple_of(4)
    };
    if total > max {
        return Err(FrameError::TooLarge(total));
    }
    Ok((buf.len() >= total).then_some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 65_556;

    #[test]
    fn stun_and_channel_data_lengths() {
        let mut stun = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        stun.extend_from_slice(&[0; 20]);
        assert_eq!(next_frame_len(&stun, MAX), Ok(Some(28)));
        assert_eq!(next_frame_len(&stun[..27], MAX), Ok(None));
        assert_eq!(next_frame_len(&stun[..3], MAX), Ok(None));
        // ChannelData with 5 bytes of data is padded to 8 on a stream.
        let cd = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0, 0xff];
        assert_eq!(next_frame_len(&cd, MAX), Ok(Some(12)));
        assert_eq!(next_frame_len(&cd[..11], MAX), Ok(None));
        assert_eq!(next_frame_len(&[], MAX), Ok(None));
    }

    #[test]
    fn garbage_and_oversize() {
        assert_eq!(
            next_frame_len(&[0x80, 0, 0, 0], MAX),
            Err(FrameError::Garbage)
        );
        // A TLS ClientHello on a plain TCP port: no magic cookie.
        assert_eq!(
            next_frame_len(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc], MAX),
            Err(FrameError::Garbage)
        );
        assert_eq!(
            next_frame_len(&[0x00, 0x01, 0x00, 0x03], MAX),
            Err(FrameError::Garbage),
            "STUN length not a multiple of 4"
        );
        assert_eq!(
            next_frame_len(&[0x40, 0x00, 0xff, 0xff], 1000),
            Err(FrameError::TooLarge(65_540))
        );
        assert_eq!(
            next_frame_len(&[0x00, 0x01, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42], MAX),
            Ok(None),
            "the largest STUN message fits"
        );
    }

    #[test]
    fn verdict_does_not_depend_on_how_bytes_arrive() {
        // Found by the stream_framer fuzz target: a long STUN length before
        // its (wrong) cookie was TooLarge with 5 bytes, Garbage with 8.
        let stream = [0x00, 0x00, 0x42, 0xa4, 0x12, 0x21, 0x00, 0xfd];
        assert_eq!(next_frame_len(&stream[..5], 12_051), Ok(None));
        assert_eq!(next_frame_len(&stream, 12_051), Err(FrameError::Garbage));
        let good = [0x00, 0x01, 0x42, 0xa4, 0x21, 0x12, 0xa4, 0x42];
        assert_eq!(next_frame_len(&good[..5], 12_051), Ok(None));
        assert_eq!(
            next_frame_len(&good, 12_051),
            Err(FrameError::TooLarge(20 + 0x42a4))
        );
    }
}
