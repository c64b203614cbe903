"""Gets the pinned .deb files with apt, checks each against the SHA256 that apt's index gives
for that exact version, and unpacks it with dpkg-deb (no installation, no maintainer scripts).

Layout under the cache folder: debs/<file>.deb, root/<package>/ (the unpacked tree) and
root/<package>.sha256 (the .deb it was unpacked from, so a changed pin unpacks again)."""
import hashlib
import os
import shutil
import subprocess


class FetchError(RuntimeError):
    pass


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def index_entries(pkgs):
    """{name: {"sha256", "size", "file"}} for each (name, version) in apt's index (one apt-cache
    call: it reads the whole index each time)."""
    out = subprocess.run(["apt-cache", "show", "--no-all-versions"] + [f"{n}={v}" for n, v in pkgs],
                         capture_output=True, text=True)
    found = {}
    for record in out.stdout.split("\n\n"):
        fields = {}
        for line in record.splitlines():
            key, sep, val = line.partition(": ")
            if sep and key in ("Package", "SHA256", "Size", "Filename", "Version") and key not in fields:
                fields[key] = val.strip()
        if "Package" in fields and "SHA256" in fields:
            found[(fields["Package"], fields["Version"])] = {
                "sha256": fields["SHA256"], "size": int(fields["Size"]), "file": os.path.basename(fields["Filename"])}
    missing = [f"{n}={v}" for n, v in pkgs if (n, v) not in found]
    if missing:
        raise FetchError(f"not in apt's index (apt-get update? or update the pins in packages.py): "
                         f"{' '.join(missing)} {out.stderr.strip()[-500:]}")
    return {n: found[(n, v)] for n, v in pkgs}


def download(pkgs, cache, log=print):
    """pkgs: [(name, version)]. Returns {name: {"sha256", "size", "file", "path"}}; every .deb
    is checked against the index, a wrong one is removed and reported."""
    debs = os.path.join(cache, "debs")
    os.makedirs(debs, exist_ok=True)
    entries = index_entries(pkgs)
    missing = [(n, v) for n, v in pkgs
               if not (os.path.exists(os.path.join(debs, entries[n]["file"]))
                       and file_sha256(os.path.join(debs, entries[n]["file"])) == entries[n]["sha256"])]
    if missing:
        log(f"downloading {len(missing)} packages into {debs}")
        out = subprocess.run(["apt-get", "download", "-q"] + [f"{n}={v}" for n, v in missing],
                             cwd=debs, capture_output=True, text=True)
        if out.returncode != 0:
            raise FetchError(f"apt-get download failed: {out.stderr.strip()[-2000:]}")
    for n, v in pkgs:
        e = entries[n]
        e["path"] = os.path.join(debs, e["file"])
        quoted = os.path.join(debs, f"{n}_{v.replace(':', '%3a')}_{e['file'].rsplit('_', 1)[-1]}")
        if not os.path.exists(e["path"]) and os.path.exists(quoted):
            os.replace(quoted, e["path"])  # apt names files with an epoch NAME_EPOCH%3aVERSION_ARCH.deb
        if not os.path.exists(e["path"]):
            raise FetchError(f"{n}: apt-get download left no {e['file']}")
        got = file_sha256(e["path"])
        if got != e["sha256"]:
            os.unlink(e["path"])
            raise FetchError(f"{n}: {e['file']} has SHA256 {got}, apt's index says {e['sha256']} (removed)")
    return entries


def unpack(name, entry, cache):
    """Unpacks the checked .deb into root/<name>/ unless that tree came from the same .deb."""
    root = os.path.join(cache, "root", name)
    stamp = root + ".sha256"
    if os.path.isdir(root) and os.path.exists(stamp) and open(stamp).read().strip() == entry["sha256"]:
        return root
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    out = subprocess.run(["dpkg-deb", "-x", entry["path"], root], capture_output=True, text=True)
    if out.returncode != 0:
        raise FetchError(f"{name}: dpkg-deb -x failed: {out.stderr.strip()}")
    with open(stamp, "w") as f:
        f.write(entry["sha256"] + "\n")
    return root
