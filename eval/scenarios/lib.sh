# Helpers shared by the recording scripts (sourced, not run).

# change MINUTES_AGO KIND SERVICE WHAT: prints one change-log line (JSON Lines) dated MINUTES_AGO
# minutes before now; SERVICE may be empty for a host-wide change.
change() {
  python3 -c 'import json,sys,datetime as d; m,k,s,w=sys.argv[1:]; print(json.dumps({"at": (d.datetime.now(d.timezone.utc)-d.timedelta(minutes=float(m))).strftime("%Y-%m-%dT%H:%M:%SZ"), "kind": k, "what": w, **({"service": s} if s else {})}))' "$@"
}
