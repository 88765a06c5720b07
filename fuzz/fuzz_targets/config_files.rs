//! The TOML configuration files: `server.toml` (parsed and validated as `server serve` does),
//! `clients.toml` (ids checked and unique) and `client.toml` (parsed and resolved as `client
//! link` does, without touching files). The first byte picks the file. They must never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nayose_client::ClientConfig;
use nayose_server::{AccreditedClients, ServerConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Ok(cfg) = ServerConfig::from_toml_str(text) {
                let _ = cfg.validate();
            }
        }
        1 => {
            let _ = AccreditedClients::from_toml_str(text);
        }
        _ => {
            if let Ok(cfg) = toml::from_str::<ClientConfig>(text) {
                let _ = cfg.resolve();
            }
        }
    }
});
