//! The system calls libc offers and std, nix and socket2 do not, each behind a small
//! safe function. With `spawn`, this is the one place `unsafe` is allowed (mio keeps
//! every OS call below its `sys` in the same way): the rest of the crate denies it.

pub mod fd;
pub mod memory;
pub mod pipe;
pub mod signal;
pub mod socket;
pub mod time;
