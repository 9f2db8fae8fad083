//! Links the Lua module with `-z nodelete`: LuaJIT calls `dlclose` on it when
//! a Lua VM closes (nginx's exit, the old cycle after a reload), and the
//! library must stay mapped for as long as the process lives: its statics
//! hold the shared-memory mappings every worker uses, and the state file's
//! writer thread runs its code. (It also lets valgrind see those statics
//! as reachable at exit, not lost.)
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "freebsd" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
}
