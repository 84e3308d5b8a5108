//! The on-disk record: `[body length u32][crc32 of body u32][body]`, where the body is
//! `[offset u64][timestamp ms i64][event id 16 bytes, zero if none][key length u16][key][value]`,
//! all little-endian. The checksum lets recovery find where a torn write begins.

use uuid::Uuid;

pub const HEADER_LEN: usize = 8;
const FIXED_BODY_LEN: usize = 8 + 8 + 16 + 2;
/// Larger lengths can only come from corruption.
pub const MAX_BODY_LEN: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub id: Option<Uuid>,
    pub key: String,
    pub value: Vec<u8>,
}

/// Appends the encoding of one record to `out`.
pub fn encode(
    out: &mut Vec<u8>,
    offset: u64,
    timestamp_ms: i64,
    id: Option<Uuid>,
    key: &str,
    value: &[u8],
) {
    let key = &key.as_bytes()[..key.len().min(usize::from(u16::MAX))];
    let body_len = FIXED_BODY_LEN + key.len() + value.len();
    let start = out.len();
    out.extend_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(id.unwrap_or_else(Uuid::nil).as_bytes());
    out.extend_from_slice(&u16::try_from(key.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32fast::hash(&out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

pub fn encoded_len(key: &str, value: &[u8]) -> usize {
    HEADER_LEN + FIXED_BODY_LEN + key.len().min(usize::from(u16::MAX)) + value.len()
}

/// What the bytes at the start of `buf` hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, intact record and the bytes it took.
    Record(StoredRecord, usize),
    /// The buffer ends inside a record; this many bytes are needed in all.
    Incomplete(usize),
    /// The bytes are not a record: a torn or corrupt write.
    Corrupt,
}

pub fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < HEADER_LEN {
        return Decoded::Incomplete(HEADER_LEN);
    }
    let body_len = u32_at(buf, 0) as usize;
    if !(FIXED_BODY_LEN..=MAX_BODY_LEN).contains(&body_len) {
        return Decoded::Corrupt;
    }
    let total = HEADER_LEN + body_len;
    if buf.len() < total {
        return Decoded::Incomplete(total);
    }
    let body = &buf[HEADER_LEN..total];
    if crc32fast::hash(body) != u32_at(buf, 4) {
        return Decoded::Corrupt;
    }
    let offset = u64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
    let timestamp_ms = i64::from_le_bytes(body[8..16].try_into().unwrap_or_default());
    let id = Uuid::from_slice(&body[16..32]).ok().filter(|id| !id.is_nil());
    let key_len = usize::from(u16::from_le_bytes([body[32], body[33]]));
    if FIXED_BODY_LEN + key_len > body_len {
        return Decoded::Corrupt;
    }
    let key = String::from_utf8_lossy(&body[FIXED_BODY_LEN..FIXED_BODY_LEN + key_len]).into_owned();
    let value = body[FIXED_BODY_LEN + key_len..].to_vec();
    Decoded::Record(StoredRecord { offset, timestamp_ms, id, key, value }, total)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let id = Uuid::now_v7();
        let mut buf = Vec::new();
        encode(&mut buf, 42, 1_700_000_000_123, Some(id), "user-1", b"{\"a\":1}");
        assert_eq!(buf.len(), encoded_len("user-1", b"{\"a\":1}"));
        let Decoded::Record(record, used) = decode(&buf) else { panic!("not decoded") };
        assert_eq!(used, buf.len());
        assert_eq!(record.offset, 42);
        assert_eq!(record.id, Some(id));
        assert_eq!(record.key, "user-1");
        assert_eq!(record.value, b"{\"a\":1}");
    }

    #[test]
    fn torn_and_flipped_bytes_are_detected() {
        let mut buf = Vec::new();
        encode(&mut buf, 7, 1, None, "k", b"value");
        for cut in 0..buf.len() {
            assert!(matches!(decode(&buf[..cut]), Decoded::Incomplete(_)), "cut at {cut}");
        }
        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert_eq!(decode(&flipped), Decoded::Corrupt);
        assert_eq!(decode(&[0xff; 16]), Decoded::Corrupt);
    }
}
