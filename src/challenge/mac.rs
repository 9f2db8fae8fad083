//! The challenge's cryptography: HMAC-SHA256 with the key's pads hashed
//! once, and comparison in constant time.

use sha2::{Digest, Sha256};

/// An HMAC-SHA256 key (RFC 2104), with the inner and outer pads already
/// hashed: a MAC of a short message costs two SHA-256 blocks and nothing
/// is allocated.
#[derive(Clone)]
pub struct Key {
    inner: Sha256,
    outer: Sha256,
}

impl Key {
    /// The key `secret` (any length; longer than a block is hashed first).
    ///
    /// ```
    /// use warden_core::challenge::mac::Key;
    /// // RFC 4231, test case 2
    /// let m = Key::new(b"Jefe").mac(&[b"what do ya want ", b"for nothing?"]);
    /// assert_eq!(m[..4], [0x5b, 0xdc, 0xc1, 0x46]);
    /// ```
    pub fn new(secret: &[u8]) -> Key {
        let mut k = [0u8; 64];
        if secret.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(secret));
        } else {
            k[..secret.len()].copy_from_slice(secret);
        }
        let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
        for i in 0..64 {
            ipad[i] ^= k[i];
            opad[i] ^= k[i];
        }
        let (mut inner, mut outer) = (Sha256::new(), Sha256::new());
        inner.update(ipad);
        outer.update(opad);
        Key { inner, outer }
    }

    /// A key derived from this one for one purpose (`label`), so that a
    /// MAC made for one format never verifies as another.
    pub fn derive(&self, label: &[u8]) -> Key {
        Key::new(&self.mac(&[label]))
    }

    /// The MAC of the concatenation of `parts`.
    #[inline]
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut i = self.inner.clone();
        for p in parts {
            i.update(p);
        }
        let mut o = self.outer.clone();
        o.update(i.finalize());
        o.finalize().into()
    }
}

/// True when `a` and `b` are equal, in a time that depends only on their
/// lengths.
///
/// ```
/// use warden_core::challenge::mac::ct_eq;
/// assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"ab", b"abc"));
/// ```
#[inline]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn rfc_4231_vectors() {
        // test case 1
        let k = Key::new(&[0x0b; 20]);
        assert_eq!(
            hex(&k.mac(&[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // test case 2, the message in three parts
        let k = Key::new(b"Jefe");
        assert_eq!(
            hex(&k.mac(&[b"what do ya", b" want for ", b"nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // test case 6: a key longer than a block
        let k = Key::new(&[0xaa; 131]);
        assert_eq!(
            hex(&k.mac(&[b"Test Using Larger Than Block-Size Key - Hash Key First"])),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn derived_keys_differ() {
        let k = Key::new(b"secret");
        let (a, b) = (k.derive(b"a"), k.derive(b"b"));
        assert_ne!(a.mac(&[b"x"]), b.mac(&[b"x"]));
        assert_eq!(a.mac(&[b"x"]), k.derive(b"a").mac(&[b"x"]));
    }
}
