//! CSV (RFC 4180) cells that a spreadsheet opens safely.

/// One cell: quoted when it must be, and a leading `=`, `+`, `-` or `@` defused so a
/// spreadsheet never runs it as a formula.
pub fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_and_defuses() {
        assert_eq!(super::field("a,b"), "\"a,b\"");
        assert_eq!(super::field("=1+1"), "'=1+1");
        assert_eq!(super::field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(super::field("阳光小学"), "阳光小学");
    }
}
