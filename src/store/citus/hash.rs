//! Citus's hash of a `trace_id`, computed here so that a batch can be split by shard before it
//! is sent (parts.rs). Citus hashes a distribution value with its type's hash function; for
//! text and varchar under a deterministic collation that is PostgreSQL's `hashtext`, which is
//! `hash_bytes` (src/common/hashfn.c: Bob Jenkins's lookup3, as PostgreSQL adapted it) over the
//! value's bytes, read as a signed 32-bit integer against the shards' ranges.

/// PostgreSQL's `hashtext(text)` (deterministic collation), as Citus places a `trace_id`.
pub fn hash_text(text: &str) -> i32 {
    let key = text.as_bytes();
    // PostgreSQL takes the length as an int; a trace id is short.
    let seed = 0x9e37_79b9_u32.wrapping_add(key.len() as u32).wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (seed, seed, seed);
    let mut rest = key;
    while rest.len() >= 12 {
        a = a.wrapping_add(word(&rest[0..4]));
        b = b.wrapping_add(word(&rest[4..8]));
        c = c.wrapping_add(word(&rest[8..12]));
        mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    // The last 0 to 11 bytes, little-endian; the lowest byte of `c` is left for the length.
    a = a.wrapping_add(word(&rest[..rest.len().min(4)]));
    if rest.len() > 4 {
        b = b.wrapping_add(word(&rest[4..rest.len().min(8)]));
    }
    if rest.len() > 8 {
        c = c.wrapping_add(word(&rest[8..]) << 8);
    }
    // Unlike Jenkins's original, PostgreSQL mixes finally even when no byte was left.
    finish(&mut a, &mut b, &mut c);
    c as i32
}

/// Up to four bytes as a little-endian word (the missing high bytes zero).
fn word(bytes: &[u8]) -> u32 {
    bytes.iter().rev().fold(0, |word, byte| (word << 8) | u32::from(*byte))
}

fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn finish(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_postgresqls_hashtext_for_every_tail_length() {
        // `SELECT hashtext(s)` on PostgreSQL 15: every length of tail (0 to 12 bytes, then one
        // past a whole block), a W3C trace id, and bytes beyond ASCII. The Citus subset checks
        // the hash against Citus's own placement of many ids
        // (citus::batches_are_written_at_the_workers_holding_their_traces).
        for (text, expected) in [
            ("", -1_477_818_771),
            ("a", 1_075_015_857),
            ("ab", 1_718_550_461),
            ("abc", -785_388_649),
            ("abcd", -393_934_804),
            ("abcde", -445_659_580),
            ("abcdefgh", -1_960_928_205),
            ("abcdefghi", -92_131_489),
            ("abcdefghijk", -1_483_803_693),
            ("abcdefghijkl", -1_586_087_212),
            ("abcdefghijklm", 405_849_808),
            ("4bf92f3577b34da6a3ce929d0e0e4736", -1_159_165_359),
            ("trace-12345", 2_097_806_666),
            ("é☃", 1_968_207_869),
        ] {
            assert_eq!(hash_text(text), expected, "{text:?}");
        }
    }
}
