# Shared by the benchmarks that drive the real agent (overhead.sh,
# pairs.sh): the end-to-end tests' helpers (starting nginx and the agent,
# reading metrics), root, and what is below.  Sourced, not run, once
# top_srcdir is set; top_builddir is the current directory unless set.
set -u
: "${top_builddir:=$(pwd)}"
export top_srcdir top_builddir
. "$top_srcdir/tests/e2e/lib.sh"
require_root

# The floors with statistics turn kernel.bpf_stats_enabled on and off
# themselves; it is left as it was found, whatever happens.
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
trap 'sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS"; cleanup' EXIT

# stats_on, stats_off: the kernel's run-time statistics for one column.
stats_on() {
	sysctl -qw kernel.bpf_stats_enabled=1
}

stats_off() {
	sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS"
}

# floor_start [--copy]: bench/bench_floor in the background (FLOOR_PID),
# once its programs are attached; exits the benchmark when they are not
# within a minute (loading and attaching them takes a tenth of a second on
# an idle machine, and once took over ten seconds on a loaded one).
# floor_stop: detaches them.
floor_start() {
	"$top_builddir/bench/bench_floor" "$@" >"$TMP/floor.out" 2>&1 &
	FLOOR_PID=$!
	wait_line "$TMP/floor.out" '^attached' 600 || {
		echo "bench_floor $* did not attach within 60 s:"
		cat "$TMP/floor.out"
		kill -INT "$FLOOR_PID"
		exit 1
	}
}

floor_stop() {
	kill -INT "$FLOOR_PID"
	wait "$FLOOR_PID" 2>/dev/null
}

# agent_cost: the running agent's cost so far, from its own figures: its
# programs' runs and run time in seconds (summed over programs, from
# /system/metrics) and its threads' CPU time in seconds (summed over its
# threads' /proc schedstat, which counts in nanoseconds: the clock ticks of
# /proc/PID/stat are too coarse for a few seconds of a thread's time).
agent_cost() {
	"$CURL" -s "$BASE/system/metrics" | awk -v cpu="$(cat "/proc/$AGENT_PID"/task/*/schedstat |
		awk '{ s += $1 } END { printf "%.9f", s / 1e9 }')" '
		index($0, "qtap_system_bpf_program_runs_total{") == 1 { n += $NF }
		index($0, "qtap_system_bpf_program_run_seconds_total{") == 1 { s += $NF }
		END { printf "%.0f %.9f %s\n", n, s, cpu }'
}

# median [COLUMN]: the median of a column (1 unless told) of standard input.
median() {
	awk -v c="${1:-1}" '{ print $c }' | sort -n |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio_interval: standard input has one line per round, "A B" (no agent
# and qtap, say); prints the 5th and 95th percentiles of median(B) /
# median(A) over 2000 resamplings of the rounds (drawn with replacement,
# each round's pair kept together): how far the machine's noise alone
# moves the ratio of medians.  A fixed seed: the same rounds give the same
# interval.
ratio_interval() {
	awk 'function med(x, n,   i, j, t) {
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && x[j - 1] > x[j]; j--) {
				t = x[j]; x[j] = x[j - 1]; x[j - 1] = t
			}
		return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
	}
	{ a[NR] = $1; b[NR] = $2 }
	END {
		if (NR < 2) { print "- -"; exit }
		srand(1)
		for (k = 1; k <= 2000; k++) {
			for (i = 1; i <= NR; i++) {
				j = int(rand() * NR) + 1
				ra[i] = a[j]; rb[i] = b[j]
			}
			r[k] = med(rb, NR) / med(ra, NR)
		}
		med(r, 2000)
		printf "%.3f %.3f\n", r[100], r[1901]
	}'
}
