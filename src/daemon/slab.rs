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
    /// The indexes of the empty slots, the next to fill last: finding one is O(1), so
    /// 10,000 services or 18,000 sessions are added in linear time, not quadratic.
    free: Vec<u32>,
    key: PhantomData<K>,
}

impl<K: Key, T> Default for Slab<K, T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            key: PhantomData,
        }
    }
}

impl<K: Key, T> Slab<K, T> {
    /// The key the next `insert` gives, for registering a value's fd before the value
    /// is stored. Appends an empty slot when none is free.
    pub fn vacant_key(&mut self) -> K {
        let index = match self.free.last() {
            Some(&index) => index as usize,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                self.free.push((self.slots.len() - 1) as u32);
                self.slots.len() - 1
            }
        };
        K::from_parts(index as u32, self.slots[index].generation)
    }

    pub fn insert(&mut self, value: T) -> K {
        let key = self.vacant_key();
        self.free.pop();
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
        self.free.push(key.index() as u32);
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
        self.slots.len() - self.free.len()
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

    /// The free slots are a list, not searched for: the key `vacant_key` names is the
    /// one `insert` fills, asked once or many times, and every emptied slot is filled
    /// again before the slab grows.
    #[test]
    fn emptied_slots_are_refilled_before_the_slab_grows() {
        let mut slab: Slab<SessionKey, usize> = Slab::default();
        let keys: Vec<SessionKey> = (0..100).map(|n| slab.insert(n)).collect();
        assert_eq!(slab.len(), 100);
        for key in keys.iter().step_by(3) {
            slab.remove(*key);
        }
        assert_eq!(slab.len(), 66);
        let vacant = slab.vacant_key();
        assert_eq!(slab.vacant_key(), vacant);
        assert_eq!(slab.insert(1000), vacant);
        for n in 0..33 {
            slab.insert(2000 + n);
        }
        assert_eq!(slab.len(), 100);
        assert_eq!(slab.slots.len(), 100);
        let fresh = slab.vacant_key();
        assert_eq!(fresh.index(), 100);
        assert_eq!(slab.insert(3000), fresh);
        assert_eq!(slab.len(), 101);
        for key in &keys {
            let removed = keys.iter().step_by(3).any(|gone| gone == key);
            assert_eq!(slab.get(*key).is_some(), !removed);
        }
    }
}
