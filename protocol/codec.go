package protocol

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	// Core deterministic encoding (RFC 8949 §4.2.1): shortest forms, sorted
	// map keys, no indefinite lengths. Golden vectors depend on it.
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		MaxNestedLevels:  MaxNestingDepth,
		MaxArrayElements: MaxArrayElements,
		MaxMapPairs:      MaxMapPairs,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v as deterministic CBOR.
func Marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cbor encode: %w", err)
	}
	return b, nil
}

// Unmarshal decodes one CBOR item into v within the package's bounds. Unknown
// map keys are ignored; trailing bytes are an error.
func Unmarshal(b []byte, v any) error {
	if err := decMode.Unmarshal(b, v); err != nil {
		return decodeError(err)
	}
	return nil
}

// decodeError turns the CBOR library's errors into the package's.
func decodeError(err error) error {
	var (
		nested *cbor.MaxNestedLevelError
		arr    *cbor.MaxArrayElementsError
		pairs  *cbor.MaxMapPairsError
	)
	switch {
	case errors.As(err, &nested):
		return &LimitError{Limit: "MaxNestingDepth", Max: MaxNestingDepth}
	case errors.As(err, &arr):
		return &LimitError{Limit: "MaxArrayElements", Max: MaxArrayElements}
	case errors.As(err, &pairs):
		return &LimitError{Limit: "MaxMapPairs", Max: MaxMapPairs}
	}
	return fmt.Errorf("%w: cbor: %v", ErrMalformed, err)
}

// RawMessage is an encoded CBOR item carried inside a message as is.
type RawMessage = cbor.RawMessage
