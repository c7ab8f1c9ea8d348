//! `[[rules]]` from the config, checked against a model's roles and labels.
#![no_main]

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mingchu::config::Config;
use mingchu::rules::{Roles, validate};

const HEAD: &str = "[server]\n[auth]\nadmin_token = \"0123456789abcdef\"\n";

fn model() -> &'static (Roles, Vec<String>) {
    static MODEL: OnceLock<(Roles, Vec<String>)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let labels: Vec<String> = ["person", "cat", "dog", "cell phone"].map(String::from).to_vec();
        let roles = HashMap::from([
            ("person".to_owned(), vec!["person".to_owned()]),
            ("animal".to_owned(), vec!["cat".to_owned(), "dog".to_owned()]),
            ("phone".to_owned(), vec!["cell phone".to_owned()]),
            ("hat".to_owned(), vec![]),
        ]);
        (Roles::new(roles), labels)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(rules) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(v) = Config::parse(&format!("{HEAD}{rules}"), Path::new("fuzz.toml")) else {
        return;
    };
    let (roles, labels) = model();
    for (i, rule) in v.config.rules.iter().flatten().enumerate() {
        if let Ok(r) = validate(i, rule, roles, labels) {
            for at in [jiff::Timestamp::MIN, jiff::Timestamp::UNIX_EPOCH, jiff::Timestamp::MAX] {
                let _ = r.in_schedule(at);
            }
        }
    }
});
