//! The integration tests, one binary (as ripgrep does): each module tests one part of
//! oxinetd through the real binary, `common` is the harness. One binary links the crate
//! once instead of once per file: a clean build of the tests takes about half the time.

mod common;

mod access;
mod banners;
mod config_check;
mod control;
mod duration;
mod exec;
mod fuzz_corpus;
mod import;
mod internal;
mod keepalive;
mod limits;
mod logging;
mod net;
mod properties;
mod real_programs;
mod reaping;
mod redirect;
mod reload;
mod reload_cache;
mod resources;
mod rpc;
mod sensors;
mod shutdown;
mod systemd;
mod tcpmux;
mod unix;
mod wait;
