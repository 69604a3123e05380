#include "textflag.h"

// func prefetchLines(ps []unsafe.Pointer) byte
TEXT ·prefetchLines(SB), NOSPLIT, $0-25
	MOVQ	ps_base+0(FP), SI
	MOVQ	ps_len+8(FP), CX
	TESTQ	CX, CX
	JZ	done
loop:
	MOVQ	(SI), AX
	PREFETCHT0	(AX)
	ADDQ	$8, SI
	DECQ	CX
	JNZ	loop
done:
	MOVB	$0, ret+24(FP)
	RET

// func prefetchBytes(b []byte) byte
TEXT ·prefetchBytes(SB), NOSPLIT, $0-25
	MOVQ	b_base+0(FP), SI
	MOVQ	b_len+8(FP), CX
	LEAQ	(SI)(CX*1), DX
	ANDQ	$-64, SI
	CMPQ	SI, DX
	JAE	done
loop:
	PREFETCHT0	(SI)
	ADDQ	$64, SI
	CMPQ	SI, DX
	JB	loop
done:
	MOVB	$0, ret+24(FP)
	RET
