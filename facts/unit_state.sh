# shellcheck shell=sh
# UnitState with its records (facts/systemd_unit.py): systemctl's properties of the unit (when
# systemctl is there), "records", one "retired <name>" a retired record, then "record" and the
# record's text, whatever its layout.
#
# unit_state.sh UNIT RECORD RETIRED_INFIX

unit=$1 record=$2 retired_infix=$3
if command -v systemctl >/dev/null 2>&1; then
    systemctl show --property=LoadState,ActiveState,UnitFileState -- "$unit" || exit
fi
echo records
for f in "$record$retired_infix"*'~'; do
    [ -f "$f" ] && echo "retired ${f##*/}"
done
if [ -f "$record" ]; then
    echo record
    cat -- "$record"
fi
true
