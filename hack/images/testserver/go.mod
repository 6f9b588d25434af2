module kubefixtures.local/hack/images/testserver

go 1.22
