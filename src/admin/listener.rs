//! Is this process the one listening on a port? Pingora binds its listeners when the
//! services start and, when the address is taken, keeps retrying in the background, so
//! readiness asks the kernel: a socket in LISTEN state on the port (from
//! `/proc/net/tcp` and `tcp6`) whose inode is one of this process's file descriptors.
//! A connection attempt cannot tell: another process holding the port accepts it too.

use std::collections::HashSet;

/// Inodes of the sockets listening on `port` in one `/proc/net/tcp` or `tcp6` table.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            if state != "0A" || local_port != port {
                return None;
            }
            // tx:rx queue, tr:tm->when, retrnsmt, uid, timeout, then the inode.
            fields.nth(5)?.parse().ok()
        })
        .collect()
}

/// The inode in a `/proc/self/fd` link target such as `socket:[12345]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `Some(true)` when this process listens on `port`; `None` when `/proc` cannot say.
pub fn this_process_listens_on(port: u16) -> Option<bool> {
    let mut listening = Vec::new();
    let mut readable = false;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            readable = true;
            listening.extend(listening_inodes(&text, port));
        }
    }
    if !readable {
        return None;
    }
    if listening.is_empty() {
        return Some(false);
    }
    let ours: HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .ok()?
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.ok()?.path()).ok()?;
            socket_inode(target.to_str()?)
        })
        .collect();
    Some(listening.iter().any(|inode| ours.contains(inode)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000089edcb3b 100 0 0 10 0
   1: 0100007F:1F90 0100007F:E07E 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000089edcb3b 100 0 0 10 0
   2: 00000000:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000089edcb3b 100 0 0 10 0
";

    #[test]
    fn finds_listening_sockets_by_port_only_in_listen_state() {
        assert_eq!(listening_inodes(TABLE, 8080), vec![4242]);
        assert_eq!(listening_inodes(TABLE, 9090), vec![99]);
        assert!(listening_inodes(TABLE, 80).is_empty());
        assert!(listening_inodes("garbage\nmore garbage", 8080).is_empty());
    }

    #[test]
    fn reads_socket_inodes_from_fd_links() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn knows_whether_it_listens_on_a_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(this_process_listens_on(port), Some(true));
        drop(listener);
        assert_eq!(this_process_listens_on(port), Some(false));
    }
}
