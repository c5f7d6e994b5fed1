#!/bin/bash
# Builds Kamailio's http_async_client module, which Debian 12 does not
# package, from the Debian source package of the installed kamailio version,
# and prints the path of the .so. Usage: build-http-async-client.sh OUTDIR
# A module built for the same version is reused. Logs go to stderr.
set -euo pipefail
out=${1:?usage: build-http-async-client.sh OUTDIR}
ver=$(dpkg-query -W -f='${Version}' kamailio)
upstream=${ver#*:}
upstream=${upstream%-*}
mkdir -p "$out"
if [ -f "$out/http_async_client.so" ] && [ "$(cat "$out/version" 2>/dev/null)" = "$ver" ]; then
	echo "$out/http_async_client.so"
	exit 0
fi

work=$(mktemp -d /tmp/asyncsip-kamailio-src.XXXXXX)
srclist=/etc/apt/sources.list.d/asyncsip-bench-src.sources
added=0
cleanup() {
	rm -rf "$work"
	if [ "$added" = 1 ]; then
		rm -f "$srclist"
		apt-get update -qq >&2 || true
	fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
if ! apt-get source --print-uris "kamailio=$ver" >/dev/null 2>&1; then
	# No deb-src line: add one for the suites the binary packages come from.
	. /etc/os-release
	cat >"$srclist" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: ${VERSION_CODENAME} ${VERSION_CODENAME}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	added=1
	apt-get update -qq >&2
fi
apt-get install -y -q --no-install-recommends build-essential bison flex pkg-config dpkg-dev \
	libevent-dev libcurl4-openssl-dev >&2
cd "$work"
apt-get source -q "kamailio=$ver" >&2
cd "kamailio-$upstream"
# The flags of Debian's build (debian/rules), so the module matches the core.
make cfg quiet=verbose prefix=/usr FLAVOUR=kamailio \
	CC_EXTRA_OPTS="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CFLAGS) -DVERSION_NODATE" \
	LD_EXTRA_OPTS="$(dpkg-buildflags --get LDFLAGS)" include_modules="http_async_client" >&2
make modules modules=src/modules/http_async_client >&2
cp src/modules/http_async_client/http_async_client.so "$out/"
echo "$ver" >"$out/version"
echo "$out/http_async_client.so"
