fn main() {
    println!("vigil {}", env!("CARGO_PKG_VERSION"));
}
