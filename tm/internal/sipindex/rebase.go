package sipindex

// Rebase points the index at data, a byte-for-byte copy of the message it
// indexed (the spans are offsets, so they hold for the copy): the index
// then outlives the buffer it was made from.
func (ix *Index) Rebase(data []byte) {
	if len(data) != len(ix.data) {
		panic("sipindex: Rebase onto data of another length")
	}
	ix.data = data
}
