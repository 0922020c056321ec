//! The shared test Ceph is usable: an image can be created, written, snapshotted and exported
//! with the `rbd` CLI, and radosgw answers S3 requests. The rbd and rgw tests build on this.

use crate::harness::ceph::{Ceph, unique_name};

#[test]
fn the_test_cluster_serves_rbd_images_and_s3() {
    let Some(ceph) = Ceph::get() else { return };
    let image = unique_name("smoke");
    let spec = format!("rbd/{image}");
    ceph.run("rbd", &["create", "--size", "1M", &spec]);
    let info = ceph.json("rbd", &["info", &spec]);
    assert_eq!(info["size"], 1 << 20, "{info}");
    ceph.run("rbd", &["snap", "create", &format!("{spec}@s1")]);
    let snaps = ceph.json("rbd", &["snap", "ls", &spec]);
    assert_eq!(snaps[0]["name"], "s1", "{snaps}");
    ceph.run("rbd", &["snap", "purge", &spec]);
    ceph.run("rbd", &["rm", "--no-progress", &spec]);

    let status = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &ceph.rgw_endpoint,
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&status.stdout), "200");
}
