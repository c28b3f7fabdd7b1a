//! `tracing` output: human-readable or JSON, filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

pub fn init(format: &str, server: bool) {
    // Client commands stay quiet unless asked; servers report what they do.
    let default = if server { "info,openraft=error" } else { "warn,openraft=error" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
