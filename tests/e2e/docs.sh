#!/bin/sh
# Documentation and program list the same things: every option of the
# table in --help and qtap(8), every configuration key in qtap.conf(5),
# every metric family in qtap-metrics(7), and the README names the man
# pages and the quick start commands.
. "$top_srcdir/tests/e2e/lib.sh"
DOCGEN=$top_builddir/src/qtap-docgen
MAN=$top_builddir/man

# roff escapes '-' as '\-'; compare on text with the escapes removed.
plain() {
	sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\e/\\/g' "$1"
}

"$QTAP" --help >"$TMP/help"
plain "$MAN/qtap.8" >"$TMP/qtap.8"
plain "$MAN/qtap.conf.5" >"$TMP/qtap.conf.5"
plain "$MAN/qtap-metrics.7" >"$TMP/qtap-metrics.7"

missing=
for o in $("$DOCGEN" options); do
	grep -q -- "$o" "$TMP/help" || missing="$missing help:$o"
	grep -q -- "$o" "$TMP/qtap.8" || missing="$missing qtap.8:$o"
done
test -z "$missing"; ok $? "every option is in --help and qtap(8)${missing:+ (missing:$missing)}"

n=$("$DOCGEN" keys | wc -l)
test "$n" -gt 10; ok $? "the configuration schema lists keys ($n)"
missing=
for k in $("$DOCGEN" keys); do
	grep -qF -- "$k" "$TMP/qtap.conf.5" || missing="$missing $k"
done
test -z "$missing"; ok $? "every configuration key is in qtap.conf(5)${missing:+ (missing:$missing)}"

missing=
for f in $("$DOCGEN" families); do
	grep -qF -- "$f" "$TMP/qtap-metrics.7" || missing="$missing $f"
done
test -z "$missing"; ok $? "every metric family is in qtap-metrics(7)${missing:+ (missing:$missing)}"

for page in qtap.8 qtap.conf.5 qtap-metrics.7; do
	LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$MAN/$page" >/dev/null 2>"$TMP/man.err" && ! grep -q . "$TMP/man.err"
	ok $? "$page renders without warnings"
	diag <"$TMP/man.err"
done

# The systemd unit parses cleanly (pointed at the binary just built).
sed "s|ExecStart\(Pre\)\?=[^ ]*/qtap |ExecStart\1=$QTAP |; s|ExecReload=[^ ]*/qtap |ExecReload=$QTAP |" \
	"$top_builddir/contrib/qtap.service" >"$TMP/qtap.service"
systemd-analyze verify --man=no "$TMP/qtap.service" >"$TMP/unit.out" 2>&1 && ! grep -q . "$TMP/unit.out"
ok $? "qtap.service passes systemd-analyze verify"
diag <"$TMP/unit.out"
grep -q '^Type=notify$' "$TMP/qtap.service" && grep -q '^Documentation=man:qtap(8)' "$TMP/qtap.service"
ok $? "qtap.service is Type=notify and documented by the man pages"

for s in 'quickstart.sh run' 'quickstart.sh check' 'qtap(8)' 'qtap.conf(5)' 'qtap-metrics(7)'; do
	grep -qF "$s" "$top_srcdir/README.md"; ok $? "README mentions $s"
done

finish
