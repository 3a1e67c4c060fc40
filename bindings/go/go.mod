module qemu-machine/bindings/go

go 1.19
