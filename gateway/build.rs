//! Rebuilds the gateway when the built web app (`web/dist`, embedded in release builds)
//! changes; until it exists, when `web/` does.
fn main() {
    let dist = std::path::Path::new("../web/dist");
    if dist.exists() {
        println!("cargo:rerun-if-changed=../web/dist");
    } else {
        println!("cargo:rerun-if-changed=../web");
    }
}
