# A PSGI app that names the process that answered, for Starlet under herd (--compat server-starter).
sub {
    return [200, ['Content-Type' => 'text/plain'], ["starlet pid $$\n"]];
};
