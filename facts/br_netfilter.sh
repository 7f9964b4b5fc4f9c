# shellcheck shell=sh
# BrNetfilter (facts/br_netfilter.py): how br_netfilter is in the kernel, which persistence files
# load it, each described by describe.sh with the file it resolves to, then PATH... described.
#
# br_netfilter.sh DESCRIBE MODULE LINE_REGEX [PATH...]
# (DESCRIBE: the text of describe.sh)

describe=$1 module=$2 regex=$3
shift 3

# A path and, for a symlink, the file it resolves to.
d() {
    if [ -L "$1" ]; then
        sh -c "$describe" describe.sh "$regex" "$1" "$(readlink -f -- "$1")"
    else
        sh -c "$describe" describe.sh "$regex" "$1"
    fi
}

if [ -e /proc/modules ]; then
    echo module_support=yes
    grep -qs "^$module " /proc/modules && echo status=module
else
    echo module_support=no
fi
# br_netfilter is what registers the net.bridge.bridge-nf-* sysctls, so their directory shows it
# active whether it is a module or built in.
[ -d /proc/sys/net/bridge ] && echo active=yes

# The files systemd-modules-load reads (the guide writes /etc/modules-load.d/cloud-init.conf).
# One grep asks whether any loads the module (what a migrated node answers no to) before one a
# file says which; -D/-d skip keep it off FIFOs and directories, which the loop's -f leaves out.
if grep -qsE -D skip -d skip -e "$regex" -- /etc/modules-load.d/*.conf /etc/modules; then
    for f in /etc/modules-load.d/*.conf /etc/modules; do
        if [ -f "$f" ] && grep -qsE -e "$regex" -- "$f"; then
            printf 'persisted=%s\n' "$f"
            d "$f"
        fi
    done
fi
for f in "$@"; do
    d "$f"
done
true
