//! Link the site binary position-dependent (`-no-pie`). A position-independent executable has
//! its pointer tables (vtables, `.data.rel.ro`, the GOT) written by the loader at start, so every
//! agent process carries a private copy, about 1.8 MiB; at a fixed address they are file-backed
//! and shared by all the agents on the machine. The controller stays position-independent
//! (address-space randomisation), as there is one of it.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=fedsim-agent=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
