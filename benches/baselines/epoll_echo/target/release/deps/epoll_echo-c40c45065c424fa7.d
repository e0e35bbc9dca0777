/work/main/benches/baselines/epoll_echo/target/release/deps/epoll_echo-c40c45065c424fa7.d: src/main.rs

/work/main/benches/baselines/epoll_echo/target/release/deps/epoll_echo-c40c45065c424fa7: src/main.rs

src/main.rs:
