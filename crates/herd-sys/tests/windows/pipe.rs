use std::io;
use std::process::Stdio;

use herd_sys::windows::pipe::{self, SecurePipe, Sid};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeServer, ServerOptions};

use crate::roles::{child, Lines};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap()
}

fn name(test: &str) -> String {
    format!(r"\\.\pipe\herd-sys-{test}-{}", std::process::id())
}

/// Sends a line through `stream` and reads the answer.
async fn ask<S>(stream: S, line: &str) -> io::Result<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .await?;
    let mut answer = String::new();
    stream.read_line(&mut answer).await?;
    Ok(answer.trim_end().to_string())
}

/// Answers one line from `server`: "PID said LINE".
async fn answer(server: &mut NamedPipeServer) -> io::Result<()> {
    let pid = pipe::client_process_id(&*server)?;
    let mut stream = BufReader::new(server);
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let reply = format!("{pid} said {}\n", line.trim_end());
    stream.get_mut().write_all(reply.as_bytes()).await
}

/// Connects to the pipe `name`, says hello, and prints the answer and the server's pid.
pub fn client(name: &str) {
    runtime().block_on(async {
        let client = ClientOptions::new().open(name).unwrap();
        println!("server={}", pipe::server_process_id(&client).unwrap());
        println!("answer={}", ask(client, "hello").await.unwrap());
    });
}

#[test]
fn clients_in_this_process_and_in_a_child_are_known_by_their_real_pid() {
    let name = name("pid");
    runtime().block_on(async {
        let secure = SecurePipe::new(&name, &[]).unwrap();
        let mut server = secure.first_instance().unwrap();

        let mut client = child("pipe_client", &name)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = Lines::new(client.stdout.take().unwrap());
        server.connect().await.unwrap();
        answer(&mut server).await.unwrap();
        let me = std::process::id();
        assert_eq!(lines.after("server="), me.to_string());
        assert_eq!(
            lines.after("answer="),
            format!("{} said hello", client.id())
        );
        assert_eq!(client.wait().unwrap().code(), Some(0));

        let mut server = secure.next_instance().unwrap();
        let local = ClientOptions::new().open(&name).unwrap();
        server.connect().await.unwrap();
        assert_eq!(pipe::server_process_id(&local).unwrap(), me);
        let (_, said) = tokio::join!(answer(&mut server), ask(local, "hi"));
        assert_eq!(said.unwrap(), format!("{me} said hi"));
    });
}

#[test]
fn a_second_first_instance_of_a_name_is_refused() {
    let name = name("first");
    runtime().block_on(async {
        let secure = SecurePipe::new(&name, &[]).unwrap();
        let _first = secure.first_instance().unwrap();
        let again = secure.first_instance().unwrap_err();
        assert_eq!(again.raw_os_error(), Some(5), "{again}"); // ERROR_ACCESS_DENIED
        secure.next_instance().unwrap();
    });
}

#[test]
fn a_name_another_server_holds_already_is_refused() {
    let name = name("squat");
    runtime().block_on(async {
        let _squatter = ServerOptions::new().create(&name).unwrap();
        let secure = SecurePipe::new(&name, &[]).unwrap();
        let refused = secure.first_instance().unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(5), "{refused}");
    });
}

#[test]
fn extra_accounts_go_into_the_descriptor_the_system_accepts() {
    let me = Sid::current_user().unwrap();
    let users = Sid::parse("S-1-5-32-545").unwrap();
    let name = name("extra");
    runtime().block_on(async {
        let secure = SecurePipe::new(&name, std::slice::from_ref(&users)).unwrap();
        assert_eq!(secure.sddl(), pipe::descriptor_sddl(&me, &[users]));
        let mut server = secure.first_instance().unwrap();
        let client = ClientOptions::new().open(&name).unwrap();
        server.connect().await.unwrap();
        let (_, said) = tokio::join!(answer(&mut server), ask(client, "hello"));
        assert!(said.unwrap().ends_with("said hello"));
    });
}

#[test]
fn accounts_are_looked_up_by_name() {
    match Sid::of_account("Administrators") {
        Ok(sid) => assert_eq!(sid.as_str(), "S-1-5-32-544"),
        Err(e) => panic!("{e}"),
    }
    assert!(Sid::of_account("no-such-account-herd").is_err());
}
