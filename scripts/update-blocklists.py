#!/usr/bin/env python3
"""Regenerates the worker's block lists from maintained upstream lists.

- worker/assets/ad-hosts.txt: the host-only blocking rules (`||host^`) of EasyList and EasyPrivacy,
  taken from Debian's uBlock Origin package (webext-ublock-origin-chromium).
- worker/assets/cookie-banner-selectors.txt: the CSS selectors of consent-management pop-ups from
  DuckDuckGo's autoconsent rules (npm package @duckduckgo/autoconsent).

Run from the repository root: python3 scripts/update-blocklists.py
"""
import glob
import json
import os
import re
import subprocess
import tarfile
import tempfile

ASSETS = "worker/assets"
HOST_RULE = re.compile(r"^\|\|([a-z0-9.-]+\.[a-z]{2,})\^(\$third-party)?$")


def ad_hosts(work):
    subprocess.run(["apt-get", "download", "webext-ublock-origin-chromium"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    deb = glob.glob(os.path.join(work, "webext-ublock-origin-chromium_*.deb"))[0]
    version = deb.rsplit("_", 2)[1]
    root = os.path.join(work, "ubo")
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    base = glob.glob(os.path.join(root, "usr/share/*/extensions/ublock-origin/assets/thirdparties/easylist"))[0]
    hosts = set()
    for name in ("easylist.txt", "easyprivacy.txt"):
        with open(os.path.join(base, name), encoding="utf-8") as f:
            for line in f:
                m = HOST_RULE.match(line.strip())
                if m:
                    hosts.add(m.group(1))
    header = (f"# Ad and tracker hosts: the host-only rules of EasyList and EasyPrivacy\n"
              f"# (https://easylist.to, GPLv3 or CC BY-SA 3.0), from Debian's webext-ublock-origin-chromium {version}.\n"
              f"# Regenerate with scripts/update-blocklists.py. A host blocks itself and its subdomains.\n")
    return header, sorted(hosts)


def cookie_selectors(work):
    out = subprocess.run(["npm", "pack", "@duckduckgo/autoconsent", "--json"], cwd=work, check=True,
                         capture_output=True, text=True).stdout
    info = json.loads(out)[0]
    with tarfile.open(os.path.join(work, info["filename"])) as tar:
        rules = json.load(tar.extractfile("package/rules/rules.json"))["autoconsent"]
    selectors = set()

    def collect(node):
        # prehideSelectors name a CMP's pop-up; "hide" steps name what its opt-out hides.
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("prehideSelectors", "hide"):
                    values = value if isinstance(value, list) else [value]
                    selectors.update(v for v in values if isinstance(v, str))
                else:
                    collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(rules)
    # Selectors that only make sense inside a CMP's own frame or shadow root would hide nothing.
    selectors = {s.strip() for s in selectors if s.strip() and "\n" not in s}
    header = (f"# Cookie-consent pop-ups: the prehide and hide selectors of DuckDuckGo autoconsent {info['version']}\n"
              f"# rules (https://github.com/duckduckgo/autoconsent, MPL-2.0), one CSS selector a line.\n"
              f"# Regenerate with scripts/update-blocklists.py.\n")
    return header, sorted(selectors)


def write(path, header, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write(header)
        for line in lines:
            f.write(line + "\n")
    print(f"{path}: {len(lines)} entries")


def main():
    with tempfile.TemporaryDirectory() as work:
        write(os.path.join(ASSETS, "ad-hosts.txt"), *ad_hosts(work))
        write(os.path.join(ASSETS, "cookie-banner-selectors.txt"), *cookie_selectors(work))


if __name__ == "__main__":
    main()
