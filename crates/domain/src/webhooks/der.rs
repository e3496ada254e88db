//! A minimal, bounds-checked DER reader: just enough to unwrap RSA public keys. Never panics.

use super::KeyError;

/// Tag of an ASN.1 INTEGER.
pub(super) const INTEGER: u8 = 0x02;
/// Tag of an ASN.1 BIT STRING.
pub(super) const BIT_STRING: u8 = 0x03;
/// Tag of an ASN.1 NULL.
pub(super) const NULL: u8 = 0x05;
/// Tag of an ASN.1 OBJECT IDENTIFIER.
pub(super) const OBJECT_IDENTIFIER: u8 = 0x06;
/// Tag of an ASN.1 SEQUENCE (constructed).
pub(super) const SEQUENCE: u8 = 0x30;

/// Most length octets accepted in long form (lengths below 4 GiB).
const MAX_LENGTH_OCTETS: usize = 4;

/// Reads consecutive tag-length-value elements from a byte slice.
pub(super) struct DerReader<'a> {
    rest: &'a [u8],
}

impl<'a> DerReader<'a> {
    /// A reader over `input`.
    pub(super) fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    /// Whether every element has been read.
    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Reads the next element, which must carry `tag`, and returns its contents.
    pub(super) fn read(&mut self, tag: u8) -> Result<&'a [u8], KeyError> {
        let (&found, rest) = self
            .rest
            .split_first()
            .ok_or(KeyError::MalformedDer("unexpected end of input"))?;
        if found != tag {
            return Err(KeyError::MalformedDer("unexpected element"));
        }
        let (length, rest) = read_length(rest)?;
        if length > rest.len() {
            return Err(KeyError::MalformedDer("element longer than its input"));
        }
        let (contents, rest) = rest.split_at(length);
        self.rest = rest;
        Ok(contents)
    }

    /// Fails when bytes are left after the last expected element.
    pub(super) fn finish(self) -> Result<(), KeyError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(KeyError::MalformedDer("trailing data"))
        }
    }
}

/// Reads a definite length in its minimal (DER) form; returns it and the bytes after it.
fn read_length(input: &[u8]) -> Result<(usize, &[u8]), KeyError> {
    let (&first, rest) = input
        .split_first()
        .ok_or(KeyError::MalformedDer("missing length"))?;
    if first < 0x80 {
        return Ok((usize::from(first), rest));
    }
    let octets = usize::from(first & 0x7f);
    if octets == 0 {
        return Err(KeyError::MalformedDer("indefinite length"));
    }
    if octets > MAX_LENGTH_OCTETS || octets > rest.len() {
        return Err(KeyError::MalformedDer("length out of range"));
    }
    let (encoded, rest) = rest.split_at(octets);
    if encoded.first() == Some(&0) {
        return Err(KeyError::MalformedDer("non-minimal length"));
    }
    let mut length: usize = 0;
    for &octet in encoded {
        length = length
            .checked_mul(256)
            .and_then(|l| l.checked_add(usize::from(octet)))
            .ok_or(KeyError::MalformedDer("length out of range"))?;
    }
    if length < 0x80 {
        return Err(KeyError::MalformedDer("non-minimal length"));
    }
    Ok((length, rest))
}

/// The magnitude of a positive DER INTEGER's contents (no leading zero), or an error.
pub(super) fn positive_integer(contents: &[u8]) -> Result<&[u8], KeyError> {
    match contents {
        [] => Err(KeyError::MalformedDer("empty integer")),
        [first, ..] if first & 0x80 != 0 => Err(KeyError::MalformedDer("negative integer")),
        [0] => Err(KeyError::MalformedDer("zero integer")),
        [0, second, ..] if second & 0x80 == 0 => Err(KeyError::MalformedDer("non-minimal integer")),
        [0, magnitude @ ..] => Ok(magnitude),
        magnitude => Ok(magnitude),
    }
}

/// Encodes one element with a minimal length (test fixtures only).
#[cfg(test)]
pub(super) fn encode(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut der = vec![tag];
    let length = contents.len();
    if length < 0x80 {
        der.push(u8::try_from(length).expect("short length"));
    } else {
        let octets: Vec<u8> = length
            .to_be_bytes()
            .into_iter()
            .skip_while(|octet| *octet == 0)
            .collect();
        der.push(0x80 | u8::try_from(octets.len()).expect("few octets"));
        der.extend(octets);
    }
    der.extend(contents);
    der
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn short_and_long_lengths_are_read() {
        let mut short = DerReader::new(&[0x02, 0x01, 0x05]);
        assert_eq!(short.read(INTEGER), Ok(&[0x05][..]));
        assert!(short.finish().is_ok());

        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0xab; 0x80]);
        let mut reader = DerReader::new(&long);
        assert_eq!(reader.read(0x04).map(<[u8]>::len), Ok(0x80));
        assert!(reader.is_empty());

        let mut two = vec![0x04, 0x82, 0x01, 0x00];
        two.extend([0; 0x100]);
        assert_eq!(DerReader::new(&two).read(0x04).map(<[u8]>::len), Ok(0x100));
    }

    #[test]
    fn malformed_lengths_are_refused() {
        for input in [
            &[0x30][..],                           // no length
            &[0x30, 0x80, 0x00, 0x00],             // indefinite
            &[0x30, 0x81, 0x05, 0, 0, 0, 0, 0],    // non-minimal long form
            &[0x30, 0x82, 0x00, 0x80],             // leading zero octet
            &[0x30, 0x85, 1, 0, 0, 0, 0],          // too many octets
            &[0x30, 0x82, 0x01],                   // truncated length
            &[0x30, 0x03, 0x00],                   // longer than input
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], // huge
        ] {
            assert!(
                DerReader::new(input).read(SEQUENCE).is_err(),
                "{input:02x?}"
            );
        }
    }

    #[test]
    fn wrong_tag_and_trailing_data_are_refused() {
        assert!(DerReader::new(&[0x02, 0x00]).read(SEQUENCE).is_err());
        let mut reader = DerReader::new(&[0x05, 0x00, 0x00]);
        assert_eq!(reader.read(NULL), Ok(&[][..]));
        assert!(reader.finish().is_err());
    }

    #[test]
    fn encoded_elements_read_back() {
        for length in [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x1_0000] {
            let contents = vec![0x5a; length];
            let der = encode(0x04, &contents);
            let mut reader = DerReader::new(&der);
            assert_eq!(reader.read(0x04), Ok(&contents[..]), "{length}");
            assert!(reader.finish().is_ok());
        }
    }

    #[test]
    fn positive_integers_are_minimal() {
        assert_eq!(positive_integer(&[0x01, 0x00]), Ok(&[0x01, 0x00][..]));
        assert_eq!(positive_integer(&[0x00, 0x80]), Ok(&[0x80][..]));
        assert!(positive_integer(&[]).is_err());
        assert!(positive_integer(&[0x80]).is_err());
        assert!(positive_integer(&[0x00]).is_err());
        assert!(positive_integer(&[0x00, 0x7f]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..64), tag in any::<u8>()) {
            let mut reader = DerReader::new(&input);
            while let Ok(contents) = reader.read(tag) {
                prop_assert!(contents.len() <= input.len());
            }
        }
    }
}
