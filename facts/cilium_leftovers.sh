# shellcheck shell=sh
# CiliumLeftovers (facts/cilium_leftovers.py): what Cilium's agent leaves on a node once it is
# uninstalled, one line an item.
#
# cilium_leftovers.sh BPFFS_ROOT CHAIN_PATTERN STATE_DIR...
#
#   agent               a cilium-agent process runs (its comm, as /proc shows it)
#   link NAME           every network device (the fact keeps Cilium's)
#   FAMILY TABLE COUNT  lines of iptables-save (FAMILY: iptables, ip6tables) naming its chains
#   pin PATH            its bpffs directory, and each of its maps pinned in tc/globals
#   dir PATH            each of its state directories that is there

bpffs=$1 chains=$2
shift 2

# grep -x on each process's comm: no procps needed on the node.
grep -qsx cilium-agent /proc/[0-9]*/comm && echo agent

# "3: cilium_net@cilium_host: <...": the name is the second field, up to its "@peer".
ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print "link", $2}'

for family in iptables ip6tables; do
    command -v "$family-save" >/dev/null 2>&1 || continue
    # iptables-save prints "*table" before each table's lines.
    "$family-save" 2>/dev/null |
        awk -v f="$family" -v c="$chains" '/^\*/ {t = substr($0, 2)} $0 ~ c {n[t]++} END {for (t in n) print f, t, n[t]}'
done

[ -e "$bpffs/cilium" ] && echo "pin $bpffs/cilium"
for f in "$bpffs"/tc/globals/cilium_*; do
    [ -e "$f" ] && echo "pin $f"
done

for d in "$@"; do
    [ -e "$d" ] && echo "dir $d"
done
true
