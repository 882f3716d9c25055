#!/bin/sh
# Assemble the build context of deploy/container/Containerfile: a minimal glibc root file
# system for the auditflow binary, made only of files on this machine (no base image).
#
#   deploy/container/build-rootfs.sh BINARY OUTDIR
#   podman build -f deploy/container/Containerfile -t auditflow:latest OUTDIR
#
# OUTDIR/rootfs/ receives:
#   usr/local/bin/auditflow         a stripped copy of BINARY (the built-in plugins are in it)
#   the shared libraries `ldd BINARY` lists and the dynamic loader, at the paths ldd names
#   etc/passwd, etc/group           root and the unprivileged user auditflow (65532:65532)
#   etc/nsswitch.conf               files (and DNS for hosts); glibc >= 2.34 has both built in
#   etc/ssl/certs/ca-certificates.crt   this host's CA bundle
#   etc/auditflow/auditflow.toml    the default config (deploy/config/auditflow.toml, or $CONFIG)
#   tmp/                            sticky, world-writable
#   var/lib/                        root's, so that only the state directory is the user's
# OUTDIR/state/ is the (empty) state directory, copied to /var/lib/auditflow owned by the user.
#
# The binary must have been built for this host's glibc (a plain `cargo build` here).
# Environment: CONFIG (default config to install), STRIP (strip program, default `strip`).
set -eu

usage() {
    echo "usage: $0 BINARY OUTDIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
binary=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
config=${CONFIG:-$here/../config/auditflow.toml}
strip=${STRIP:-strip}
uid=65532
gid=65532

[ -f "$binary" ] && [ -x "$binary" ] || { echo "$0: $binary is not an executable file" >&2; exit 1; }
[ -f "$config" ] || { echo "$0: no config at $config" >&2; exit 1; }
command -v ldd >/dev/null || { echo "$0: ldd not found" >&2; exit 1; }
command -v "$strip" >/dev/null || { echo "$0: $strip not found (binutils)" >&2; exit 1; }

rootfs=$out/rootfs
rm -rf "$rootfs" "$out/state"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/auditflow" "$rootfs/etc/ssl/certs" "$out/state"

# The binary, stripped (a copy: BINARY is left as it is).
"$strip" --strip-all -o "$rootfs/usr/local/bin/auditflow" "$binary"
chmod 0755 "$rootfs/usr/local/bin/auditflow"

# Exactly the libraries ldd lists, and the loader. Lines look like
#   libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
#   /lib64/ld-linux-x86-64.so.2 (0x...)
#   linux-vdso.so.1 (0x...)          (in the kernel: nothing to copy)
ldd_out=$(ldd "$binary") || { echo "$0: ldd $binary failed (statically linked?)" >&2; exit 1; }
if echo "$ldd_out" | grep -q "not found"; then
    echo "$0: unresolved libraries:" >&2
    echo "$ldd_out" | grep "not found" >&2
    exit 1
fi
libs=$(echo "$ldd_out" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
[ -n "$libs" ] || { echo "$0: ldd listed no libraries" >&2; exit 1; }
for lib in $libs; do
    mkdir -p "$rootfs$(dirname "$lib")"
    # -L: the file itself under the name the loader asks for (ld-linux is a symlink on Debian).
    cp -L "$lib" "$rootfs$lib"
    chmod 0755 "$rootfs$lib"
done

# Users: root and the unprivileged runtime user, whose home is the state directory.
cat > "$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
auditflow:x:$uid:$gid:auditflow:/var/lib/auditflow:/sbin/nologin
EOF
cat > "$rootfs/etc/group" <<EOF
root:x:0:
auditflow:x:$gid:
EOF
cat > "$rootfs/etc/nsswitch.conf" <<EOF
passwd: files
group: files
hosts: files dns
EOF
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"

cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
cp "$config" "$rootfs/etc/auditflow/auditflow.toml"
chmod 0644 "$rootfs/etc/ssl/certs/ca-certificates.crt" "$rootfs/etc/auditflow/auditflow.toml"

mkdir -p "$rootfs/tmp" "$rootfs/var/lib"
chmod 1777 "$rootfs/tmp"

echo "$rootfs: $(du -sk "$rootfs" | cut -f1) KiB"
echo "libraries: $(echo "$libs" | tr '\n' ' ')"
