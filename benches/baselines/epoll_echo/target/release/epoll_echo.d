/work/main/benches/baselines/epoll_echo/target/release/epoll_echo: /work/main/benches/baselines/epoll_echo/src/main.rs
