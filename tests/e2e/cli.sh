#!/bin/sh
# The command line as an operator meets it: --validate, exit statuses for
# configuration and usage errors, --help and --version.  Needs no root.
. "$top_srcdir/tests/e2e/lib.sh"

"$QTAP" --validate "$top_srcdir/etc/qtap.conf" >"$TMP/out" 2>&1
ok $? "--validate accepts etc/qtap.conf"
grep -q 'valid' "$TMP/out"; ok $? "--validate says the file is valid"

cat >"$TMP/bad.conf" <<'CONF'
# a comment
tap = {
  direction = "sideways";
};
CONF
"$QTAP" --validate "$TMP/bad.conf" >"$TMP/out" 2>&1
test $? -eq 78; ok $? "--validate of a bad file exits 78"
grep -q "bad.conf:3: tap.direction: " "$TMP/out"; ok $? "the error names file, line and key"
diag <"$TMP/out"

"$QTAP" --config "$TMP/bad.conf" --httpd-listen 127.0.0.1:0 >"$TMP/out" 2>&1
test $? -eq 78; ok $? "starting with a bad file exits 78 before anything starts"
grep -q "bad.conf:3: tap.direction" "$TMP/out"; ok $? "the start-up error names file, line and key"

printf 'tap = { bogus_key = 1; };\n' >"$TMP/unknown.conf"
"$QTAP" --validate "$TMP/unknown.conf" >"$TMP/out" 2>&1
test $? -eq 78 && grep -q "unknown.conf:1: tap.bogus_key" "$TMP/out"
ok $? "an unknown key is an error naming it"

printf 'tap = { direction = "egress" \n' >"$TMP/syntax.conf"
"$QTAP" --validate "$TMP/syntax.conf" >"$TMP/out" 2>&1
test $? -eq 78 && grep -q "syntax.conf:[0-9]" "$TMP/out"
ok $? "a syntax error is an error with its line"

"$QTAP" --config "$TMP/does-not-exist.conf" >"$TMP/out" 2>&1
test $? -eq 78; ok $? "a missing --config file exits 78"

"$QTAP" --log-level loud >"$TMP/out" 2>&1
test $? -eq 64; ok $? "a bad option value exits 64"
grep -q -- "--log-level" "$TMP/out"; ok $? "the usage error names the option"

"$QTAP" --help >"$TMP/out" 2>&1
test $? -eq 0 && grep -q -- '--httpd-listen' "$TMP/out"; ok $? "--help lists the options"
"$QTAP" --version >"$TMP/out" 2>&1
status=$?
# The commit of the tree built, not of the one configure ran in: the one
# configure was given, else a distribution's, else git's.
want=${QTAP_COMMIT:-}
[ -z "$want" ] && [ -f "$top_srcdir/.commit" ] && want=$(cat "$top_srcdir/.commit")
[ -z "$want" ] && want=$(cd "$top_srcdir" && git rev-parse --short=12 HEAD 2>/dev/null)
test $status -eq 0 && grep -qx "qtap 0.1.0 (commit ${want:-unknown})" "$TMP/out"
ok $? "--version prints version and commit (${want:-unknown})"

finish
