//! Linux: the device of the file system an opened file is on, as its superblock names it
//! (`s_dev`, which `sock_diag` reports): the `major:minor` field of `/proc/self/mountinfo`
//! (`proc(5)`) for the mount that `/proc/self/fdinfo/FD` says the file was opened on
//! (`mnt_id`, Linux 3.15). `stat`'s `st_dev` is not always that device: btrfs gives each
//! subvolume an anonymous device of its own, and overlayfs over several file systems one per
//! layer.

use std::io::{BufRead, BufReader};
use std::os::unix::io::{AsRawFd, BorrowedFd};

use super::imp::Device;

/// The device of the file system `file` is on, as its superblock names it; `None` where it
/// cannot be read: no `/proc`, a kernel before 3.15 (no `mnt_id`), or a mount no longer
/// listed (detached since `file` was opened).
pub fn device(file: BorrowedFd<'_>) -> Option<Device> {
    let fdinfo = std::fs::read(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).ok()?;
    let mount = mount_id(&fdinfo)?;
    let mountinfo = BufReader::new(std::fs::File::open("/proc/self/mountinfo").ok()?);
    mountinfo
        .split(b'\n')
        .map_while(Result::ok)
        .find_map(|line| device_of(&line, mount))
}

/// The `mnt_id:` of an fdinfo file.
fn mount_id(fdinfo: &[u8]) -> Option<u64> {
    let value = fdinfo
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"mnt_id:"))?;
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// The device (3rd field, `major:minor`) of the mountinfo `line`, if it is that of the mount
/// `mount` (1st field). Fields are separated by single spaces; those read here are numbers
/// (the paths after them may be any bytes).
fn device_of(line: &[u8], mount: u64) -> Option<Device> {
    let mut fields = line.split(|&b| b == b' ').map(std::str::from_utf8);
    let id: u64 = fields.next()?.ok()?.parse().ok()?;
    if id != mount {
        return None;
    }
    let (major, minor) = fields.nth(1)?.ok()?.split_once(':')?;
    Some(Device {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsFd;

    #[test]
    fn the_mount_id_is_read_from_fdinfo() {
        let fdinfo = b"pos:\t0\nflags:\t012100000\nmnt_id:\t31\nino:\t1234\n";
        assert_eq!(mount_id(fdinfo), Some(31));
        assert_eq!(
            mount_id(b"pos:\t0\nflags:\t02\n"),
            None,
            "before Linux 3.15"
        );
        assert_eq!(mount_id(b"mnt_id:\tx\n"), None);
    }

    #[test]
    fn a_mounts_device_is_read_from_its_mountinfo_line() {
        let btrfs = b"412 29 0:45 /sv /srv rw,relatime shared:1 - btrfs /dev/loop0 rw,subvol=/sv";
        assert_eq!(
            device_of(btrfs, 412),
            Some(Device {
                major: 0,
                minor: 45
            })
        );
        assert_eq!(device_of(btrfs, 41), None, "another mount");
        let odd_path = b"7 1 259:3 / /mnt/\xff\\040x rw - ext4 /dev/nvme0n1p3 rw";
        assert_eq!(
            device_of(odd_path, 7),
            Some(Device {
                major: 259,
                minor: 3
            })
        );
        assert_eq!(device_of(b"7 1 259 / /", 7), None);
        assert_eq!(device_of(b"7", 7), None);
        assert_eq!(device_of(b"", 7), None);
    }

    /// On file systems whose files all carry the superblock's device (ext4, tmpfs: where the
    /// temporary directory is here), the mount's device is `st_dev`'s.
    #[test]
    fn the_mount_device_of_a_file_in_a_temporary_directory_is_its_st_dev() {
        let scratch = crate::scratch::Scratch::new("herd-sys-mount-device");
        std::fs::create_dir(scratch.path()).unwrap();
        let path = scratch.path().join("f");
        std::fs::write(&path, "x").unwrap();
        for path in [&path, scratch.path()] {
            let file = crate::fs::open_itself(path).unwrap();
            let st_dev = file.metadata().unwrap().dev();
            assert_eq!(device(file.as_fd()), Some(Device::of_stat(st_dev)));
        }
    }
}
