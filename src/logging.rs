//! One line per event on stderr, which journald and test harnesses both read.

use log::LevelFilter;
use simplelog::{ConfigBuilder, WriteLogger};

pub fn init(level: LevelFilter) {
    let config = ConfigBuilder::new()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .set_time_format_rfc3339()
        .build();
    let _ = WriteLogger::init(level, config, std::io::stderr());
}
