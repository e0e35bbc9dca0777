//! [`Key`]: the name of one registration, an index and a generation packed
//! into a mio `Token`. Nothing here touches the kernel.

use std::fmt;

use mio::Token;

/// Bits of a token that hold the slab index; the rest hold the generation.
/// Half of `usize` each: 32 and 32 on 64-bit targets.
const INDEX_BITS: u32 = usize::BITS / 2;
pub(crate) const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
/// The largest slab index a key can name. The all-ones index is reserved so
/// that [`Key::WAKER`] can never collide with a registration.
pub(crate) const MAX_INDEX: usize = INDEX_MASK - 1;
/// Generations wrap within the bits left over.
pub(crate) const GENERATION_MASK: u32 = (usize::MAX >> INDEX_BITS) as u32;

/// Names one registration in a [`Selector`](crate::Selector): a slab index plus a generation.
///
/// Keys are small `Copy` values, and they are never reused: once a
/// registration is gone its key stays dead even if a new registration takes
/// the same slab slot, because the new one has a different generation. The
/// key is also the `mio::Token` the kernel reports, so an event can be checked
/// against the registration it was meant for.
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use mio::Interest;
/// use mio::net::TcpListener;
/// use reactor::Selector;
///
/// let mut selector = Selector::new()?;
/// let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
/// let key = selector.register(&mut listener, Interest::READABLE, "listener")?;
/// assert_eq!(selector.get(key), Some(&"listener"));
///
/// selector.unregister(&mut listener, key)?;
/// let again = selector.register(&mut listener, Interest::READABLE, "again")?;
/// assert_eq!(again.index(), key.index()); // the slot is reused...
/// assert_ne!(again, key); // ...but the key is not
/// assert_eq!(selector.get(key), None);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(usize);

impl Key {
    /// The key that [`Selector::select`](crate::Selector::select) reports when the selector's
    /// [`Waker`](mio::Waker) was woken (see [`Selector::waker`](crate::Selector::waker)).
    pub const WAKER: Key = Key(usize::MAX);

    #[inline]
    pub(crate) fn new(index: usize, generation: u32) -> Key {
        debug_assert!(index <= MAX_INDEX);
        Key(((generation as usize) << INDEX_BITS) | index)
    }

    /// The slab slot this key names.
    #[inline]
    pub fn index(self) -> usize {
        self.0 & INDEX_MASK
    }

    /// The generation of the registration this key names.
    #[inline]
    pub fn generation(self) -> u32 {
        (self.0 >> INDEX_BITS) as u32
    }

    /// The mio token this key is registered under.
    #[inline]
    pub fn token(self) -> Token {
        Token(self.0)
    }

    /// The key a token stands for (the inverse of [`Key::token`]).
    #[inline]
    pub fn from_token(token: Token) -> Key {
        Key(token.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Key::WAKER {
            f.write_str("Key(WAKER)")
        } else {
            write!(f, "Key({}#{})", self.index(), self.generation())
        }
    }
}
