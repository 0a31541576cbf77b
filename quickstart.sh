#!/bin/sh
# qtap quick start on a fresh Debian machine.
#
#   ./quickstart.sh run     install what is needed, build, and run qtap in the
#                           foreground with etc/qtap.conf
#   ./quickstart.sh check   the same set-up, then the whole test suite; ends
#                           with one line "N passed, N failed"
#
# Run it as root (sudo ./quickstart.sh run): apt-get, the agent's BPF
# programs and the end-to-end tests need it.  The build goes to ./build
# (BUILD_DIR to change); extra configure flags come from CONFIGURE_FLAGS,
# e.g. CONFIGURE_FLAGS="--enable-asan --enable-ubsan".
set -eu

cd "$(dirname "$0")"
SRC=$(pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build}
CONFIGURE_FLAGS=${CONFIGURE_FLAGS:-}

# Build dependencies, then what the tests drive (clients, servers, promtool).
BUILD_PKGS="build-essential autoconf automake libtool pkg-config clang llvm bpftool
libbpf-dev libelf-dev zlib1g-dev liburcu-dev libjemalloc-dev libmicrohttpd-dev
libnghttp2-dev libconfig-dev check node-llhttp"
TEST_PKGS="curl prometheus python3 python3-requests wget nodejs procps iproute2 man-db systemd nginx openssl wrk"

install_packages() {
	missing=
	for p in $BUILD_PKGS ${1:-}; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	echo "quickstart: installing:$missing"
	apt-get update -q &&
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends $missing
}

# Each step stops the build at its first failure, also where the caller
# tests its status (set -e does not hold there).
build() {
	{ [ -x configure ] || ./autogen.sh; } &&
		mkdir -p "$BUILD_DIR" &&
		cd "$BUILD_DIR" &&
		# shellcheck disable=SC2086
		{ [ -f Makefile ] || "$SRC/configure" $CONFIGURE_FLAGS; } &&
		make -j"$(nproc)"
}

# The last line: N passed, N failed, counting every test case of every
# test program (each speaks TAP).  A skipped test counts as failed: a test
# that cannot run on this machine has not proven anything.
summary() {
	log=$BUILD_DIR/test-suite.log
	if [ ! -f "$log" ]; then
		echo "0 passed, 1 failed"
		return 1
	fi
	awk '
	# Only the summary at the top of the file, not the logs quoted below it.
	/^# (PASS|XFAIL):/ && !($2 in seen) { seen[$2] = 1; pass += $3 }
	/^# (FAIL|XPASS|ERROR|SKIP):/ && !($2 in seen) { seen[$2] = 1; fail += $3 }
	END { printf "%d passed, %d failed\n", pass, fail; exit fail ? 1 : 0 }
	' "$log"
}

case "${1:-}" in
run | check)
	if [ "$(id -u)" -ne 0 ]; then
		echo "quickstart: run it as root (sudo $0 $1): it installs packages," \
			"and the agent and its tests load BPF programs" >&2
		[ "$1" = check ] && echo "0 passed, 1 failed"
		exit 1
	fi
	;;
esac

case "${1:-}" in
run)
	install_packages
	build
	exec "$BUILD_DIR/src/qtap" --config "$SRC/etc/qtap.conf"
	;;
check)
	# a set-up that fails still ends with the line
	if ! install_packages "$TEST_PKGS" || ! build; then
		echo "quickstart: the set-up failed; no test ran" >&2
		echo "0 passed, 1 failed"
		exit 1
	fi
	status=0
	rm -f "$BUILD_DIR/test-suite.log"
	make -k check VERBOSE=1 || status=$?
	summary || status=1
	exit $status
	;;
*)
	echo "usage: $0 run|check" >&2
	exit 64
	;;
esac
