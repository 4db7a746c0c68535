# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_chittyctl_global_optspecs
    string join \n socket= json h/help V/version
end

function __fish_chittyctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_chittyctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_chittyctl_using_subcommand
    set -l cmd (__fish_chittyctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c chittyctl -n "__fish_chittyctl_needs_command" -l socket -d 'chittyd\'s admin socket' -r -F
complete -c chittyctl -n "__fish_chittyctl_needs_command" -l json -d 'Print JSON with stable field names instead of text for people'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -s V -l version -d 'Print version'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -f -a "users" -d 'List every connected participant: id, name, in a cluster the node it is connected to, transport, address, since when, Lamport time of its join, messages sent and received, backlog, idle time. In a cluster, every node\'s participants are listed'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -f -a "kick" -d 'Remove a participant: its stream ends with the reason, everyone sees it leave, and the audit trail records who did it'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -f -a "bans" -d 'List the bans in force: name, when each ends and how long is left, why, and who gave it'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -f -a "unban" -d 'Lift the ban on a name (any letter case), so it can join again at once'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -f -a "clock" -d 'Show the Lamport clock, uptime, participants and events processed; in a cluster, also this node, the last stream sequence it applied and its lag behind the stream'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -f -a "cluster" -d 'List the cluster\'s nodes as this node knows them: name, address, participants, when each was last heard from, this node\'s lag behind the stream, and each node\'s state (this node: serving or not serving; the others: alive, or silent for longer than the node timeout). Fails with exit status 5 on a chittyd that is not part of a cluster'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -f -a "stats" -d 'Show the counters: connections, messages, deliveries, slow consumers, rejections, audit, and connections refused at the chat port (per-address limits, handshake timeouts, TLS)'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -f -a "announce" -d 'Send a notice from SERVER to every participant'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -f -a "bench" -d 'Load-test a chittyd over its chat port (not the admin socket): connect N participants, let S send, measure deliveries, latency, ordering, losses, and with --server-pid the server\'s CPU per delivery and memory per connection'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -f -a "tls-cert" -d 'Write a TLS certificate for chittyd (not a CA certificate) and its key, for the names clients connect to, signed by a small CA whose certificate clients trust with `chitty chat --ca`: cert.pem, key.pem (mode 0600) and ca.pem. The CA\'s key is not kept, so that CA signs nothing else. Works on files only, not on a running chittyd'
complete -c chittyctl -n "__fish_chittyctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand users" -l socket -d 'chittyd\'s admin socket' -r -F
complete -c chittyctl -n "__fish_chittyctl_using_subcommand users" -l json -d 'Print JSON with stable field names instead of text for people'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand users" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand kick" -l reason -d 'Why (shown to the participant and everyone else, and audited)' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand kick" -l ban -d 'Keep the name, in any letter case, from rejoining for this long (e.g. 10m, 1h30m). Bans are kept in chittyd\'s state directory and survive restarts' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand kick" -l socket -d 'chittyd\'s admin socket' -r -F
complete -c chittyctl -n "__fish_chittyctl_using_subcommand kick" -l json -d 'Print JSON with stable field names instead of text for people'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand kick" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bans" -l socket -d 'chittyd\'s admin socket' -r -F
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bans" -l json -d 'Print JSON with stable field names instead of text for people'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bans" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand unban" -l socket -d 'chittyd\'s admin socket' -r -F
complete -c chittyctl -n "__fish_chittyctl_using_subcommand unban" -l json -d 'Print JSON with stable field names instead of text for people'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand unban" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand clock" -l socket -d 'chittyd\'s admin socket' -r -F
complete -c chittyctl -n "__fish_chittyctl_using_subcommand clock" -l json -d 'Print JSON with stable field names instead of text for people'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand clock" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand cluster" -l socket -d 'chittyd\'s admin socket' -r -F
complete -c chittyctl -n "__fish_chittyctl_using_subcommand cluster" -l json -d 'Print JSON with stable field names instead of text for people'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand cluster" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand stats" -l socket -d 'chittyd\'s admin socket' -r -F
complete -c chittyctl -n "__fish_chittyctl_using_subcommand stats" -l json -d 'Print JSON with stable field names instead of text for people'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand announce" -l socket -d 'chittyd\'s admin socket' -r -F
complete -c chittyctl -n "__fish_chittyctl_using_subcommand announce" -l json -d 'Print JSON with stable field names instead of text for people'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand announce" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l target -d 'chittyd\'s chat port; several (repeated or comma-separated) for the nodes of a cluster' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l ca -d 'Trust this certificate authority (PEM) for the server\'s certificate, instead of the system\'s (ca.pem from chittyctl tls-cert). Implies --tls' -r -F
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l transport -d 'Which protocol the participants speak' -r -f -a "grpc\t'The gRPC Broadcast stream'
ws\t'The WebSocket JSON gateway'"
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l pattern -d 'Broadcast to the room, or direct messages one-way' -r -f -a "broadcast\t'Senders broadcast to the room; every participant receives every message'
direct\t'Senders send direct messages one-way to the other participants'"
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l clients -d 'Participants that connect and receive' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l senders -d 'How many of them send' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l rate -d 'Messages per second per sender; 0 sends as fast as the server takes them. Paced senders are spread evenly over the period (sender i starts i/(S x R) seconds in), so that they do not all send at the same instant' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l duration -d 'How long the senders send (e.g. 10s)' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l size -d 'Message size in bytes (32 to 128; the send time is inside)' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l stall -d 'Extra participants that join and then never read (slow-consumer isolation)' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l connect-concurrency -d 'Connections opened at once while connecting' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l connect-rate -d 'New connections per second to each target address while connecting; 0 opens them as fast as it can. The default stays below what chittyd accepts from one address (64 new connections per second, 256 open ones: its --new-connections-per-ip and --max-connections-per-ip); raise those on the server before raising this, or --clients beyond 256 per target' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l server-pid -d 'chittyd\'s process id, to report its CPU per delivery and memory per connection. Several (comma-separated, or the option repeated) are summed: a cluster\'s nodes and its NATS server, whose CPU together is what a delivery costs' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l window -d 'Messages each sender may have in flight (sent but not yet delivered everywhere). With --rate 0 this is what "as fast as the server takes" means: a closed loop as deep as the server accepts without cutting anyone off. By default every receiver\'s share of the messages in flight is half of chittyd\'s default backlog (2048 of 4096): 2048 / S per sender for broadcasts, 2048 x receivers / S for direct messages' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l drain-timeout -d 'After the senders stop, how long to wait for the last deliveries' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l socket -d 'chittyd\'s admin socket' -r -F
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l tls -d 'Connect over TLS (to a chittyd run with --tls-cert), checking its certificate against the system\'s certificate authorities, or --ca'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -l json -d 'Print JSON with stable field names instead of text for people'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand tls-cert" -l name -d 'A name clients will connect to, as they give it to `chitty chat --host`: a DNS name (chat.example.org) or an IP address (192.0.2.7, 2001:db8::7); repeat for each name. Default: this machine\'s host name, localhost, 127.0.0.1 and ::1' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand tls-cert" -l out -d 'The folder to write ca.pem, cert.pem and key.pem in; created if missing' -r -F
complete -c chittyctl -n "__fish_chittyctl_using_subcommand tls-cert" -l days -d 'How many days the certificates are valid' -r
complete -c chittyctl -n "__fish_chittyctl_using_subcommand tls-cert" -l socket -d 'chittyd\'s admin socket' -r -F
complete -c chittyctl -n "__fish_chittyctl_using_subcommand tls-cert" -l force -d 'Replace ca.pem, cert.pem and key.pem where they exist (clients then need the new ca.pem)'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand tls-cert" -l json -d 'Print JSON with stable field names instead of text for people'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand tls-cert" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand help; and not __fish_seen_subcommand_from users kick bans unban clock cluster stats announce bench tls-cert help" -f -a "users" -d 'List every connected participant: id, name, in a cluster the node it is connected to, transport, address, since when, Lamport time of its join, messages sent and received, backlog, idle time. In a cluster, every node\'s participants are listed'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand help; and not __fish_seen_subcommand_from users kick bans unban clock cluster stats announce bench tls-cert help" -f -a "kick" -d 'Remove a participant: its stream ends with the reason, everyone sees it leave, and the audit trail records who did it'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand help; and not __fish_seen_subcommand_from users kick bans unban clock cluster stats announce bench tls-cert help" -f -a "bans" -d 'List the bans in force: name, when each ends and how long is left, why, and who gave it'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand help; and not __fish_seen_subcommand_from users kick bans unban clock cluster stats announce bench tls-cert help" -f -a "unban" -d 'Lift the ban on a name (any letter case), so it can join again at once'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand help; and not __fish_seen_subcommand_from users kick bans unban clock cluster stats announce bench tls-cert help" -f -a "clock" -d 'Show the Lamport clock, uptime, participants and events processed; in a cluster, also this node, the last stream sequence it applied and its lag behind the stream'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand help; and not __fish_seen_subcommand_from users kick bans unban clock cluster stats announce bench tls-cert help" -f -a "cluster" -d 'List the cluster\'s nodes as this node knows them: name, address, participants, when each was last heard from, this node\'s lag behind the stream, and each node\'s state (this node: serving or not serving; the others: alive, or silent for longer than the node timeout). Fails with exit status 5 on a chittyd that is not part of a cluster'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand help; and not __fish_seen_subcommand_from users kick bans unban clock cluster stats announce bench tls-cert help" -f -a "stats" -d 'Show the counters: connections, messages, deliveries, slow consumers, rejections, audit, and connections refused at the chat port (per-address limits, handshake timeouts, TLS)'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand help; and not __fish_seen_subcommand_from users kick bans unban clock cluster stats announce bench tls-cert help" -f -a "announce" -d 'Send a notice from SERVER to every participant'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand help; and not __fish_seen_subcommand_from users kick bans unban clock cluster stats announce bench tls-cert help" -f -a "bench" -d 'Load-test a chittyd over its chat port (not the admin socket): connect N participants, let S send, measure deliveries, latency, ordering, losses, and with --server-pid the server\'s CPU per delivery and memory per connection'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand help; and not __fish_seen_subcommand_from users kick bans unban clock cluster stats announce bench tls-cert help" -f -a "tls-cert" -d 'Write a TLS certificate for chittyd (not a CA certificate) and its key, for the names clients connect to, signed by a small CA whose certificate clients trust with `chitty chat --ca`: cert.pem, key.pem (mode 0600) and ca.pem. The CA\'s key is not kept, so that CA signs nothing else. Works on files only, not on a running chittyd'
complete -c chittyctl -n "__fish_chittyctl_using_subcommand help; and not __fish_seen_subcommand_from users kick bans unban clock cluster stats announce bench tls-cert help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
