//! `X-Forwarded-For` / `X-Forwarded-Proto` from a trusted proxy, and
//! `server.trusted_proxies` entries.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use mingchu::api::client::{Cidr, TrustedProxies};

fuzz_target!(|data: &[u8]| {
    // The first line is a proxy entry, the rest forwarded headers split at NUL bytes.
    let (first, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut nets: Vec<Cidr> = vec!["127.0.0.1".parse().expect("literal"), "10.0.0.0/8".parse().expect("literal")];
    if let Ok(c) = std::str::from_utf8(first).unwrap_or("").parse::<Cidr>() {
        nets.push(c);
    }
    let proxies = TrustedProxies::new(nets);
    let mut parts: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    let proto = parts.pop();
    let _ = proxies.client_from(IpAddr::from([127, 0, 0, 1]), false, &parts, proto);
    let stranger = IpAddr::from([198, 51, 100, 1]);
    assert_eq!(proxies.client_from(stranger, true, &parts, proto).ip, stranger, "headers believed from a stranger");
});
