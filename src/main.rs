fn main() {
    print!("{}", y360_avatar_operator::crd::render_all().expect("render"));
}
