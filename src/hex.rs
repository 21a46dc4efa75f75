//! Lower-case hex, for digests and ids in logs, cookies and keys. (The
//! template library keeps its own for the `sha256`/`hmac` filters, as it
//! imports nothing from the rest of the crate.)

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `b` as lower-case hex, two digits a byte.
pub fn encode(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_lower_case_digits_a_byte() {
        assert_eq!(super::encode(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(super::encode(&[]), "");
    }
}
