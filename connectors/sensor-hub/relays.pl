#!/usr/bin/perl
# The relay service: the instance's `relay` devices, one JSON object per line on the
# localhost port their entries name:
#   {"get": "relay"}                             -> {"state": {"power": false, "switches": 0}}
#   {"set": "relay", "values": {"power": true}}  -> {"applied": {"power": true}}
#   anything wrong                               -> {"error": {"code": "...", "message": "..."}}
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use JSON::PP;

$| = 1;
my $json = JSON::PP->new->canonical;
sub say_log { print "relays: INFO @_\n" }

my $instance = $ENV{INSTANCE_NAME} or die "relays: ERROR INSTANCE_NAME is not set\n";
my $dir = $ENV{IOT2MQTT_INSTANCES_DIR} || "/app/instances";
open(my $file, "<", "$dir/$instance.json") or die "relays: ERROR cannot read $dir/$instance.json: $!\n";
my $config = $json->decode(do { local $/; <$file> });
close($file);

my %relays;
my $port = 8711;
for my $device (@{ $config->{devices} || [] }) {
    next unless ($device->{kind} // "") eq "relay";
    $relays{ $device->{device_id} } = { power => JSON::PP::false, switches => 0 };
    $port = $device->{port} if $device->{port};
}

sub answer {
    my ($request) = @_;
    return { error => { code => "INVALID_PAYLOAD", message => "a request is a JSON object" } } unless ref $request eq "HASH";
    my $id = $request->{get} // $request->{set} // "";
    my $relay = $relays{$id};
    return { error => { code => "UNKNOWN_DEVICE", message => "no relay \"$id\"" } } unless $relay;
    return { state => { %$relay } } if exists $request->{get};
    my $values = $request->{values};
    return { error => { code => "INVALID_PAYLOAD", message => "values must be an object" } } unless ref $values eq "HASH";
    for my $key (keys %$values) {
        return { error => { code => "UNSUPPORTED_PROPERTY", message => "a relay has no \"$key\"" } } unless $key eq "power";
        return { error => { code => "INVALID_VALUE", message => "power must be true or false" } } unless JSON::PP::is_bool($values->{power});
    }
    if (exists $values->{power} && ($values->{power} ? 1 : 0) != ($relay->{power} ? 1 : 0)) {
        $relay->{switches} += 1;
    }
    $relay->{power} = $values->{power} if exists $values->{power};
    say_log("$id: power " . ($relay->{power} ? "on" : "off"));
    return { applied => { %$values } };
}

my $server = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $port, Listen => 16, ReuseAddr => 1)
    or die "relays: ERROR cannot listen on 127.0.0.1:$port: $@\n";
say_log("serving " . scalar(keys %relays) . " relays on 127.0.0.1:$port");
my $select = IO::Select->new($server);
my %buffers;
while (1) {
    for my $ready ($select->can_read) {
        if ($ready == $server) {
            my $client = $server->accept or next;
            $select->add($client);
            $buffers{$client} = "";
            next;
        }
        my $read = sysread($ready, my $chunk, 65536);
        if (!$read) {
            $select->remove($ready);
            delete $buffers{$ready};
            close($ready);
            next;
        }
        $buffers{$ready} .= $chunk;
        while ($buffers{$ready} =~ s/^(.*?)\r?\n//) {
            my $line = $1;
            my $request = eval { $json->decode($line) };
            my $reply = $json->encode(answer($request));
            syswrite($ready, "$reply\n");
        }
    }
}
