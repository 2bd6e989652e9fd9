//! Incremental UTF-8 validation: text is checked as its bytes arrive, frame
//! by frame and within a frame still arriving, so that a byte that cannot
//! belong to valid UTF-8 fails the message at once (RFC 6455 §8.1).

/// The state between two pieces of one text message: the bytes of a code
/// point cut at the end of the last piece.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8 {
    carry: [u8; 4],
    len: u8,
}

/// The bytes fed so far cannot begin valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid;

/// The length of the sequence a valid leading byte starts.
fn width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8 {
    /// Checks the next piece of the message.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), Invalid> {
        if self.len > 0 {
            let have = usize::from(self.len);
            let take = (width(self.carry[0]) - have).min(data.len());
            self.carry[have..have + take].copy_from_slice(&data[..take]);
            self.len += take as u8;
            data = &data[take..];
            match std::str::from_utf8(&self.carry[..usize::from(self.len)]) {
                Ok(_) => self.len = 0,
                // Still cut, and this piece had nothing more to give.
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(Invalid),
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let rest = &data[e.valid_up_to()..];
                self.carry[..rest.len()].copy_from_slice(rest);
                self.len = rest.len() as u8;
                Ok(())
            }
            Err(_) => Err(Invalid),
        }
    }

    /// The message ended: a code point still cut is invalid. Resets the
    /// state for the next message.
    pub(crate) fn finish(&mut self) -> Result<(), Invalid> {
        let cut = self.len > 0;
        self.len = 0;
        if cut {
            Err(Invalid)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pieces(data: &[u8], cuts: &[usize]) -> Result<(), Invalid> {
        let mut v = Utf8::default();
        let mut at = 0;
        for &c in cuts {
            let end = (at + c).min(data.len());
            v.feed(&data[at..end])?;
            at = end;
        }
        v.feed(&data[at..])?;
        v.finish()
    }

    #[test]
    fn known_cases() {
        let ok = "κόσμε-€-𝄞-a".as_bytes();
        for cut in 0..ok.len() {
            assert_eq!(pieces(ok, &[cut]), Ok(()), "cut at {cut}");
        }
        assert_eq!(pieces(&[0xCE, 0xBA, 0xE1], &[]), Err(Invalid), "cut at end");
        assert_eq!(pieces(&[0xED, 0xA0, 0x80], &[1]), Err(Invalid), "surrogate");
        assert_eq!(pieces(&[0xF4, 0x90, 0x80, 0x80], &[2]), Err(Invalid));
        // Fails at the first piece that makes it invalid, before the end.
        let mut v = Utf8::default();
        assert_eq!(v.feed(&[0xCE]), Ok(()));
        assert_eq!(v.feed(&[0x41]), Err(Invalid));
    }

    proptest! {
        #[test]
        fn agrees_with_std_at_any_cuts(
            data in prop::collection::vec(any::<u8>(), 0..64),
            text in ".{0,24}",
            cuts in prop::collection::vec(0usize..8, 0..12),
            mix in any::<bool>(),
        ) {
            // Random bytes are mostly invalid; real text mostly valid.
            let bytes = if mix { text.into_bytes() } else { data };
            let whole = std::str::from_utf8(&bytes).is_ok();
            prop_assert_eq!(pieces(&bytes, &cuts).is_ok(), whole);
        }
    }
}
