//! Generational slots with typed keys: a key names one value for as long as it lives,
//! and a key kept after its value is gone (an epoll event, a timer, a lookup's answer,
//! a child of a service since reloaded away) finds nothing instead of its successor.

use std::marker::PhantomData;

/// Generations have 31 bits, so a key packed into a `u64` leaves the top bit to the
/// epoll token for its kind (`poller::Token`).
const GENERATION_MASK: u32 = 0x7fff_ffff;

/// A slot's index and generation; each kind of slot has its own key type.
pub trait Key: Copy {
    fn from_parts(index: u32, generation: u32) -> Self;
    fn index(self) -> usize;
    fn generation(self) -> u32;

    /// `generation << 32 | index`: the lower 63 bits of a token or lookup ticket.
    fn to_u64(self) -> u64 {
        (u64::from(self.generation()) << 32) | self.index() as u64
    }

    fn from_u64(packed: u64) -> Self {
        Self::from_parts(
            (packed & 0xffff_ffff) as u32,
            ((packed >> 32) as u32) & GENERATION_MASK,
        )
    }
}

macro_rules! key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name {
            index: u32,
            generation: u32,
        }

        impl Key for $name {
            fn from_parts(index: u32, generation: u32) -> Self {
                $name { index, generation }
            }
            fn index(self) -> usize {
                self.index as usize
            }
            fn generation(self) -> u32 {
                self.generation
            }
        }
    };
}

key!(
    /// A service: its listener's token, its timers and its children carry this.
    ServiceKey
);
key!(
    /// A connection the daemon serves itself (internal service, relay, tcpmux request).
    SessionKey
);
key!(
    /// A connection waiting for a lookup thread; the lookup's ticket.
    ParkedKey
);

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

pub struct Slab<K, T> {
    slots: Vec<Slot<T>>,
    key: PhantomData<K>,
}

impl<K: Key, T> Default for Slab<K, T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            key: PhantomData,
        }
    }
}

impl<K: Key, T> Slab<K, T> {
    /// The key the next `insert` gives, for registering a value's fd before the value
    /// is stored. Appends an empty slot when none is free.
    pub fn vacant_key(&mut self) -> K {
        let index = self
            .slots
            .iter()
            .position(|slot| slot.value.is_none())
            .unwrap_or_else(|| {
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                self.slots.len() - 1
            });
        K::from_parts(index as u32, self.slots[index].generation)
    }

    pub fn insert(&mut self, value: T) -> K {
        let key = self.vacant_key();
        self.slots[key.index()].value = Some(value);
        key
    }

    pub fn get(&self, key: K) -> Option<&T> {
        let slot = self.slots.get(key.index())?;
        (slot.generation == key.generation())
            .then_some(slot.value.as_ref())
            .flatten()
    }

    pub fn get_mut(&mut self, key: K) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index())?;
        (slot.generation == key.generation())
            .then_some(slot.value.as_mut())
            .flatten()
    }

    /// Takes the value out; every key to it is stale from now on.
    pub fn remove(&mut self, key: K) -> Option<T> {
        let slot = self.slots.get_mut(key.index())?;
        if slot.generation != key.generation() {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1) & GENERATION_MASK;
        Some(value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (K, &T)> {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let key = K::from_parts(index as u32, slot.generation);
            slot.value.as_ref().map(|value| (key, value))
        })
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (K, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| {
                let key = K::from_parts(index as u32, slot.generation);
                slot.value.as_mut().map(|value| (key, value))
            })
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|slot| slot.value.as_ref())
    }

    /// The keys of every value, collected, for removing them one by one.
    pub fn keys(&self) -> Vec<K> {
        self.iter().map(|(key, _)| key).collect()
    }

    pub fn len(&self) -> usize {
        self.values().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_key_finds_nothing() {
        let mut slab: Slab<SessionKey, &str> = Slab::default();
        let first = slab.insert("first");
        assert_eq!(slab.get(first), Some(&"first"));
        assert_eq!(slab.remove(first), Some("first"));
        let second = slab.insert("second");
        // The slot is reused under a new generation.
        assert_eq!(second.index(), first.index());
        assert_eq!(slab.get(first), None);
        assert_eq!(slab.remove(first), None);
        assert_eq!(slab.get(second), Some(&"second"));
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn keys_pack_into_63_bits() {
        let key = ParkedKey::from_parts(u32::MAX, GENERATION_MASK);
        assert_eq!(key.to_u64() >> 63, 0);
        assert_eq!(ParkedKey::from_u64(key.to_u64()), key);
        // Generations wrap within their 31 bits.
        let mut slab: Slab<ServiceKey, ()> = Slab::default();
        slab.slots.push(Slot {
            generation: GENERATION_MASK,
            value: Some(()),
        });
        slab.remove(ServiceKey::from_parts(0, GENERATION_MASK));
        assert_eq!(slab.vacant_key(), ServiceKey::from_parts(0, 0));
    }
}
