complete -c chittyd -l listen -d 'Where the chat port (gRPC and WebSocket) listens: PORT or :PORT (every address, IPv4 and IPv6), HOST:PORT with a host name (every address it resolves to: localhost:9000 is usually 127.0.0.1 and ::1), IPv4:PORT (0.0.0.0:8080) or [IPv6]:PORT ([::1]:8080)' -r
complete -c chittyd -l shutdown-grace -d 'How long shutdown waits for participants\' streams to end before closing them (e.g. 5s)' -r
complete -c chittyd -l backlog -d 'Messages a participant may have waiting to be read; one that falls further behind is disconnected as a slow consumer, so it never delays anybody else' -r
complete -c chittyd -l max-participants -d 'Participants the server takes at once; further joins are refused (RESOURCE_EXHAUSTED)' -r
complete -c chittyd -l rate-limit -d 'Messages per second a participant may send, sustained (token bucket); 0 means no limit. Messages over it are refused with a private notice' -r
complete -c chittyd -l rate-burst -d 'Messages a participant may send at once before the rate limit applies' -r
complete -c chittyd -l flood-limit -d 'Refused messages within 10 s that count as a flood: the sender is disconnected (RESOURCE_EXHAUSTED, "flooding")' -r
complete -c chittyd -l join-deadline -d 'A gRPC stream that has not joined after this long is closed (DEADLINE_EXCEEDED)' -r
complete -c chittyd -l keepalive -d 'How often a quiet WebSocket peer is pinged; one that answers nothing for twice this long is presumed dead and its leave is announced' -r
complete -c chittyd -l max-frame -d 'Largest frame accepted from a client, in bytes; larger ones end that client\'s stream' -r
complete -c chittyd -l audit-log -d 'Append the audit trail (one JSON object per line) to this file; "-" is standard output, "none" turns the file off. Default: standard output when run by hand, none when logging to the journal (which gets every record as a structured entry)' -r -F
complete -c chittyd -l audit-queue -d 'Audit records that may wait for the writer; beyond it records are counted as dropped (and the drop itself is recorded) rather than slowing chat down' -r
complete -c chittyd -l admin-socket -d 'The admin socket (for chittyctl), created mode 0660; "none" serves no admin interface. A socket left by a crashed chittyd is replaced; one a running chittyd answers on is not. If the default cannot be created (running by hand without permission for /run/chitty), chittyd uses $XDG_RUNTIME_DIR/chitty/admin.sock, where chittyctl looks next, or else runs without one; a path given explicitly must work. At exit chittyd removes the socket and the directories it created for it' -r -F
complete -c chittyd -l max-connections-per-ip -d 'Connections one client address may hold open at once; more are closed as soon as they are accepted (and counted: chittyctl stats). Behind a reverse proxy every client has the proxy\'s address: raise it or set 0 (no limit). IPv4 clients of a dual-stack listener count as their IPv4 address' -r
complete -c chittyd -l new-connections-per-ip -d 'New connections one client address may open per --new-connections-window, and the most it may open in one burst; more are closed as soon as they are accepted. A client that reconnects needs one; a script opening connections in a loop is stopped. 0: no limit (load tests from one machine need it)' -r
complete -c chittyd -l new-connections-window -d 'The time window of --new-connections-per-ip (e.g. 1s, 1m)' -r
complete -c chittyd -l handshake-timeout -d 'How long a new connection has to finish its TLS handshake and send its first request (the gRPC call or the WebSocket upgrade); one that has not is closed, so sockets that connect and say nothing do not hold descriptors (e.g. 10s)' -r
complete -c chittyd -l tls-cert -d 'Serve the chat port (gRPC and WebSocket) over TLS with this certificate chain (PEM, leaf first); needs --tls-key. `chittyctl tls-cert` writes one, with the CA certificate clients trust. A CA certificate is refused: clients refuse it as a server\'s own. Clients then connect with `chitty chat --tls` (and `--ca FILE` for a private CA) or wss://. Without it the port speaks plain TCP, fine on localhost or behind a TLS-terminating proxy' -r -F
complete -c chittyd -l tls-key -d 'The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1). Readable by chittyd only' -r -F
complete -c chittyd -l metrics-listen -d 'Serve Prometheus metrics at http://ADDR/metrics (off by default); ADDR in the forms of --listen, e.g. localhost:9100' -r
complete -c chittyd -l log-target -d 'Where logs go' -r -f -a "auto\t'journald when systemd started us with stderr on the journal, otherwise stderr'
journal\t'journald, with structured fields'
stderr\t'Standard error, human-readable'"
complete -c chittyd -l log -d 'Log filter, in tracing\'s EnvFilter syntax (e.g. info, debug, chitty=debug)' -r
complete -c chittyd -l audit-text -d 'Include message text in audit records (it is personal data; off by default: records always carry the length)'
complete -c chittyd -l no-audit-journal -d 'Do not send audit records to the journal even when logging there'
complete -c chittyd -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chittyd -s V -l version -d 'Print version'
