//! Rebuild when a migration is added: `embed_migrations!("../../sql")` (src/template.rs) reads
//! the directory at compile time, and cargo does not otherwise know that a new file there
//! changes the crate.
fn main() {
    println!("cargo:rerun-if-changed=../../sql");
}
