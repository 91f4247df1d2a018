//! With `mail.smtp_url` set, mail goes over SMTP: a minimal SMTP server on loopback receives it.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::TestService;
use keygraph_kernel::testing::Backend;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

keygraph_kernel::on_both_backends!(mail_is_delivered_over_smtp_when_configured);

/// Accepts SMTP sessions and keeps each message's DATA.
async fn fake_smtp() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 fake ESMTP\r\n").await?;
                let mut data: Option<String> = None;
                while let Some(line) = lines.next_line().await? {
                    if let Some(message) = data.as_mut() {
                        if line == "." {
                            store.lock().expect("store").push(std::mem::take(message));
                            data = None;
                            write.write_all(b"250 queued\r\n").await?;
                        } else {
                            message.push_str(&line);
                            message.push('\n');
                        }
                        continue;
                    }
                    let verb = line
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 fake\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await?;
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await?;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    (port, received)
}

async fn mail_is_delivered_over_smtp_when_configured(backend: Backend) {
    let (port, received) = fake_smtp().await;
    let Some(svc) = TestService::start_with(backend, |config| {
        config.mail.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    })
    .await
    else {
        return;
    };
    svc.register("ada@example.com", "analytical engine notes")
        .await
        .data();
    let mut delivered = Vec::new();
    for _ in 0..100 {
        delivered = received.lock().expect("store").clone();
        if !delivered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered.len(), 1, "one message over SMTP");
    let mail = common::decode_mail(&delivered[0]);
    assert!(mail.contains("To: ada@example.com"), "{mail}");
    assert!(
        mail.contains("Subject: Confirm your email address"),
        "{mail}"
    );
    assert_eq!(common::link_token(&mail).len(), 43, "{mail}");
    assert!(
        svc.mails_to("ada@example.com").is_empty(),
        "no file copy when SMTP is configured"
    );
}
